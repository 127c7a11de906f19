"""The worker processes of `wsmon serve`: started, watched, restarted with backoff, drained.

A worker position (`Slot`) outlives its processes: when one dies the position keeps its index and
is given a new process, after a delay that doubles while the worker keeps dying young.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import sys
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from time import monotonic
from typing import Any

import orjson

from .config import Settings
from .control import ControlChannel, Op
from .metrics import Cell, Snapshot
from .tasks import Background

log = logging.getLogger(__name__)

RESTART_DELAY_MIN = 0.1
RESTART_DELAY_MAX = 5.0
STABLE_SECONDS = 5.0  # a worker that lived this long restarts at once if it dies
HELLO_TIMEOUT = 30.0


class Queued(deque[tuple[socket.socket, bytes]]):
    """A worker's connections waiting for room in its hand-off socket, with their hand-off
    messages, and the most that ever waited at once (wsmon_handoff_queued_max: a storm's peak
    falls between scrapes). The slot keeps it across its worker's restarts."""

    most: int = 0

    def append(self, item: tuple[socket.socket, bytes]) -> None:
        super().append(item)
        self.most = max(self.most, len(self))


@dataclass(eq=False)
class Slot:
    """One worker position in the pool; its process is replaced when it dies."""

    index: int
    # Its current process (pool.py).
    process: asyncio.subprocess.Process | None = None
    channel: ControlChannel | None = None
    alive: bool = False
    started: float = 0.0
    restart_delay: float = RESTART_DELAY_MIN
    generation: int = 0  # which process this is, counting restarts
    hello: asyncio.Event = field(default_factory=asyncio.Event)
    # Connections given to that process (handoff.py).
    handoff: socket.socket | None = None
    handed: int = 0  # connections handed (or queued for hand-off) to this process
    queued: Queued = field(default_factory=Queued)  # waiting for room in the hand-off socket
    ended: int = 0  # of those, how many the worker last reported closed
    # Its metrics (pool_metrics.py).
    snapshot: Snapshot = field(default_factory=dict)
    waiting: dict[int, asyncio.Future[Snapshot]] = field(default_factory=dict)

    @property
    def load(self) -> int:
        """Connections this worker holds (see Supervised.connection_ended)."""
        return self.handed - self.ended

    def begin(self, channel: ControlChannel, handoff: socket.socket) -> None:
        """A new process in this position: nothing handed to it or counted by it yet."""
        self.channel = channel
        self.handoff = handoff
        self.hello = asyncio.Event()
        self.snapshot, self.handed, self.ended = {}, 0, 0
        self.generation += 1
        self.started = monotonic()


# Reads a worker's control channel until it closes.
ControlReader = Callable[[Slot, ControlChannel], Coroutine[Any, Any, None]]


class Pool:
    """Starts a process in every slot and keeps one there until the pool drains."""

    def __init__(
        self,
        settings: Settings,
        slots: Sequence[Slot],
        tasks: Background,
        *,
        alive: Cell,
        restarts: Sequence[Cell],
        read_control: ControlReader,
        on_exit: Sequence[Callable[[Slot], None]],
    ) -> None:
        self.settings = settings
        self.slots = slots
        self.draining = False
        self._tasks = tasks
        self._alive = alive
        self._restarts = restarts
        self._read_control = read_control
        self._on_exit = on_exit  # what else a dead process leaves to clear, before its sockets

    async def start(self) -> None:
        await asyncio.gather(*(self._start(slot) for slot in self.slots))

    def _count_alive(self) -> None:
        self._alive.value = sum(s.alive for s in self.slots)

    async def _start(self, slot: Slot) -> None:
        control_parent, control_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        handoff_parent, handoff_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        settings_json = orjson.dumps(self.settings.to_mapping()).decode()
        try:
            slot.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-P",  # the current directory must not shadow wsmon's modules
                "-m",
                "wsmon.exporter.worker",
                "--index",
                str(slot.index),
                "--control-fd",
                str(control_child.fileno()),
                "--handoff-fd",
                str(handoff_child.fileno()),
                "--settings",
                settings_json,
                pass_fds=(control_child.fileno(), handoff_child.fileno()),
            )
        finally:
            control_child.close()
            handoff_child.close()
        handoff_parent.setblocking(False)
        reader, writer = await asyncio.open_unix_connection(sock=control_parent)
        channel = ControlChannel(reader, writer)
        slot.begin(channel, handoff_parent)
        self._tasks.spawn(self._read_control(slot, channel))
        self._tasks.spawn(self._watch(slot, slot.process))
        try:
            await asyncio.wait_for(slot.hello.wait(), HELLO_TIMEOUT)
        except TimeoutError:  # a worker that hangs before serving is killed (and restarted)
            log.error("worker %d did not start within %.0fs; killing it", slot.index, HELLO_TIMEOUT)
            with contextlib.suppress(ProcessLookupError):
                slot.process.kill()
            return
        slot.alive = slot.process.returncode is None
        self._count_alive()

    async def _watch(self, slot: Slot, process: asyncio.subprocess.Process) -> None:
        code = await process.wait()
        slot.hello.set()  # never leave _start waiting on a worker that died before saying hello
        slot.alive = False
        self._count_alive()
        for clear in self._on_exit:
            clear(slot)
        if slot.channel is not None:
            slot.channel.close()
        if slot.handoff is not None:
            slot.handoff.close()
        slot.channel = slot.handoff = None
        if self.draining:
            return
        self._restarts[slot.index].value += 1
        lived = monotonic() - slot.started
        slot.restart_delay = (
            RESTART_DELAY_MIN
            if lived >= STABLE_SECONDS
            else min(slot.restart_delay * 2, RESTART_DELAY_MAX)
        )
        log.error(
            "worker %d (pid %d) died with exit code %s after %.1fs; restarting in %.1fs",
            slot.index,
            process.pid,
            code,
            lived,
            slot.restart_delay,
        )
        await asyncio.sleep(slot.restart_delay)
        if not self.draining:
            await self._start(slot)

    def replace(self, slot: Slot, why: str) -> None:
        """Kill a worker that has stopped serving; _watch restarts it and its clients reconnect
        elsewhere."""
        if slot.process is None or slot.process.returncode is not None:
            return
        log.error("worker %d (pid %d) %s; killing it", slot.index, slot.process.pid, why)
        slot.alive = False  # no more hand-offs or relays; _watch does the rest
        with contextlib.suppress(ProcessLookupError):
            slot.process.kill()

    async def drain(self) -> None:
        """Ask every worker to close its connections with 1001 and exit; kill those that have
        not after drain_seconds (theirs) + 2 s. No worker is restarted from now on."""
        self.draining = True
        processes = [slot.process for slot in self.slots if slot.process is not None]
        for slot in self.slots:
            if slot.channel is not None:
                slot.channel.send({"op": Op.DRAIN})
        waits = [process.wait() for process in processes]
        try:
            await asyncio.wait_for(asyncio.gather(*waits), self.settings.drain_seconds + 2.0)
        except TimeoutError:
            for process in processes:
                if process.returncode is None:
                    log.warning("worker pid %d did not drain in time; killing it", process.pid)
                    process.kill()

    def kill(self) -> None:
        """Leave no worker behind when the supervisor exits."""
        for slot in self.slots:
            if slot.process is not None and slot.process.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    slot.process.kill()
