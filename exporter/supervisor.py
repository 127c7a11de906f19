"""`wsmon serve`: the supervisor that owns the port and a pool of worker processes.

The supervisor accepts every TCP connection and hands it (SCM_RIGHTS) to the worker with the fewest
connections, so the pool stays balanced however the kernel would have hashed the clients;
SO_REUSEPORT alone left one of 8 workers with 59 % more connections than another
(measured before wsmon was written: docs/performance.md).
It also relays deliveries between workers, merges their metrics for /metrics, restarts a worker that
dies, and on SIGTERM drains every worker before it exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import signal
import socket
import sys
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from time import monotonic
from typing import Any

import orjson

from wsmon import __version__
from wsmon.thresholds import Threshold

from . import health
from .config import Settings
from .control import ControlChannel
from .metrics import Registry, Snapshot, merge, without_gauges

log = logging.getLogger(__name__)

SNAPSHOT_TIMEOUT = 2.0
RESTART_DELAY_MIN = 0.1
RESTART_DELAY_MAX = 5.0
STABLE_SECONDS = 5.0  # a worker that lived this long restarts at once if it dies
ACCEPT_PAUSE = 0.1
HELLO_TIMEOUT = 30.0
# Deliveries relayed to one worker and not yet taken: past this the worker is stuck, not slow.
RELAY_BACKLOG_LIMIT = 64 * 1024 * 1024
MAX_QUEUED_HANDOFFS = 4096  # per worker; past this its connections go elsewhere or are refused


@dataclass(eq=False)
class Slot:
    """One worker position in the pool; its process is replaced when it dies."""

    index: int
    process: asyncio.subprocess.Process | None = None
    channel: ControlChannel | None = None
    handoff: socket.socket | None = None
    alive: bool = False
    started: float = 0.0
    restart_delay: float = RESTART_DELAY_MIN
    snapshot: Snapshot = field(default_factory=dict)
    handed: int = 0  # connections handed (or queued for hand-off) to this process
    queued: deque[socket.socket] = field(default_factory=deque)  # waiting for room in hand-off
    ended: int = 0  # of those, how many the worker last reported closed
    generation: int = 0  # which process this is, counting restarts
    waiting: dict[int, asyncio.Future[Snapshot]] = field(default_factory=dict)
    hello: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def load(self) -> int:
        """Connections this worker holds (see Supervised.connection_ended)."""
        return self.handed - self.ended


class Supervisor:
    def __init__(self, settings: Settings, thresholds: Sequence[Threshold]) -> None:
        self.settings = settings
        self.thresholds = thresholds  # what /api/health judges by
        self.slots = [Slot(index) for index in range(settings.workers)]
        self.registry = Registry()
        self.registry["wsmon_workers_configured"].child().value = settings.workers
        self._alive = self.registry["wsmon_workers_alive"].child()
        self._restarts = [
            self.registry["wsmon_worker_restarts_total"].child(str(slot.index))
            for slot in self.slots
        ]
        self._no_worker = self.registry["wsmon_connections_rejected_total"].child("no_worker")
        self.retired: Snapshot = {}  # counters of workers that died, so pool totals never go back
        self.history = health.History()
        self.draining = False
        self._listener: socket.socket | None = None
        self._requests = itertools.count(1)
        self._stopped = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- lifecycle -------------------------------------------------------------------------------

    def _spawn_task(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def listen(self) -> socket.socket:
        settings = self.settings
        family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((settings.host, settings.port))
        listener.listen(4096)
        listener.setblocking(False)
        self._listener = listener
        return listener

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        listener = self._listener or self.listen()
        await asyncio.gather(*(self._start(slot) for slot in self.slots))
        loop.add_reader(listener.fileno(), self._accept)
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, lambda: self._spawn_task(self.drain()))
        host, port = listener.getsockname()[:2]
        log.info(
            "wsmon %s serving on http://%s:%d with %d workers (capacity %d each)",
            __version__,
            host,
            port,
            len(self.slots),
            self.settings.worker_capacity,
        )
        self._spawn_task(health.sample_forever(self.history, self._merged_last_known))
        await self._stopped.wait()

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
        slot.channel = ControlChannel(reader, writer)
        slot.handoff = handoff_parent
        slot.hello = asyncio.Event()
        slot.snapshot, slot.handed, slot.ended = {}, 0, 0
        slot.generation += 1
        slot.started = monotonic()
        self._spawn_task(self._read(slot, slot.channel))
        self._spawn_task(self._watch(slot, slot.process))
        try:
            await asyncio.wait_for(slot.hello.wait(), HELLO_TIMEOUT)
        except TimeoutError:  # a worker that hangs before serving is killed (and restarted)
            log.error("worker %d did not start within %.0fs; killing it", slot.index, HELLO_TIMEOUT)
            with contextlib.suppress(ProcessLookupError):
                slot.process.kill()
            return
        slot.alive = slot.process.returncode is None
        self._alive.value = sum(s.alive for s in self.slots)

    async def _watch(self, slot: Slot, process: asyncio.subprocess.Process) -> None:
        code = await process.wait()
        slot.hello.set()  # never leave _start waiting on a worker that died before saying hello
        slot.alive = False
        self._alive.value = sum(s.alive for s in self.slots)
        # Keep what it counted, and count its open connections as closed without a close frame
        # (1006), so that opened - closed still equals active across the pool.
        lost = sum(row[1] for row in slot.snapshot.get("wsmon_connections_active", ()))
        closed = {"wsmon_connections_closed_total": [[["1006"], lost]]}
        self.retired = merge([self.retired, without_gauges(slot.snapshot), closed])
        slot.snapshot = {}
        for waiter in slot.waiting.values():
            if not waiter.done():
                waiter.set_result({})
        if slot.channel is not None:
            slot.channel.close()
        if slot.handoff is not None:
            asyncio.get_running_loop().remove_writer(slot.handoff.fileno())
            slot.handoff.close()
        slot.channel = slot.handoff = None
        while slot.queued:  # connections still waiting for the dead worker: their clients retry
            slot.queued.popleft().close()
            self._no_worker.value += 1
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

    async def drain(self) -> None:
        """Stop accepting, ask every worker to close its connections with 1001, then exit."""
        if self.draining:
            return
        self.draining = True
        log.info("draining: closing connections (at most %.1fs)", self.settings.drain_seconds)
        if self._listener is not None:
            asyncio.get_running_loop().remove_reader(self._listener.fileno())
            self._listener.close()
        processes = [slot.process for slot in self.slots if slot.process is not None]
        for slot in self.slots:
            if slot.channel is not None:
                slot.channel.send({"op": "drain"})
        waits = [process.wait() for process in processes]
        try:
            await asyncio.wait_for(asyncio.gather(*waits), self.settings.drain_seconds + 2.0)
        except TimeoutError:
            for process in processes:
                if process.returncode is None:
                    log.warning("worker pid %d did not drain in time; killing it", process.pid)
                    process.kill()
        log.info("drained; exiting")
        self._stopped.set()

    # -- connections -----------------------------------------------------------------------------

    def _accept(self) -> None:
        listener = self._listener
        assert listener is not None
        while True:
            try:
                conn, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                # Out of file descriptors (EMFILE/ENFILE) and the like: keep serving what is open
                # and try accepting again shortly, rather than spinning on a readable socket.
                log.error("accept failed: %s; pausing accepts for %.1fs", exc, ACCEPT_PAUSE)
                loop = asyncio.get_running_loop()
                loop.remove_reader(listener.fileno())
                loop.call_later(ACCEPT_PAUSE, self._resume_accepting)
                return
            self._tune(conn)
            self._hand_off(conn)

    def _resume_accepting(self) -> None:
        if not self.draining and self._listener is not None:
            asyncio.get_running_loop().add_reader(self._listener.fileno(), self._accept)

    def _tune(self, conn: socket.socket) -> None:
        """No Nagle delay; TCP keepalive finds peers that vanished without a close (1006)."""
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        idle = self.settings.keepalive_seconds
        if idle:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, max(1, idle // 3))
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)

    def _hand_off(self, conn: socket.socket) -> None:
        """Pass the connection to the least-loaded worker, queueing it if that worker's hand-off
        socket is full (its send buffer holds a few hundred descriptors)."""
        for slot in sorted((s for s in self.slots if s.alive), key=lambda s: s.load):
            if len(slot.queued) >= MAX_QUEUED_HANDOFFS:
                continue
            if not slot.queued and self._send_fd(slot, conn):
                conn.close()
            else:
                slot.queued.append(conn)
                if len(slot.queued) == 1:
                    handoff = slot.handoff
                    assert handoff is not None
                    asyncio.get_running_loop().add_writer(handoff.fileno(), self._flush, slot)
            slot.handed += 1
            return
        conn.close()
        self._no_worker.value += 1
        log.warning("no worker could take a connection; closed it")

    def _send_fd(self, slot: Slot, conn: socket.socket) -> bool:
        """False when the worker's queue is full; a dead worker's connections are dropped."""
        assert slot.handoff is not None
        try:
            socket.send_fds(slot.handoff, [b"c"], [conn.fileno()])
        except BlockingIOError:
            return False
        except OSError as exc:  # the worker died; _watch closes what it had queued
            log.warning("hand-off to worker %d failed: %s", slot.index, exc)
            self._no_worker.value += 1
        return True

    def _flush(self, slot: Slot) -> None:
        while slot.queued:
            if not self._send_fd(slot, slot.queued[0]):
                return
            slot.queued.popleft().close()
        assert slot.handoff is not None
        asyncio.get_running_loop().remove_writer(slot.handoff.fileno())

    # -- control channel -------------------------------------------------------------------------

    async def _read(self, slot: Slot, channel: ControlChannel) -> None:
        while (frame := await channel.receive()) is not None:
            if slot.channel is not channel:
                return  # the worker behind this channel has died and been retired
            try:
                self._handle(slot, channel, *frame)
            except Exception:  # one bad frame must not end the supervisor's link to a worker
                log.exception("worker %d: bad control frame %r", slot.index, frame[0])

    def _handle(
        self, slot: Slot, channel: ControlChannel, header: dict[str, Any], body: bytes
    ) -> None:
        op = header["op"]
        if op == "relay":
            frame = ControlChannel.encode(header, body)  # once, for every other worker
            for other in self.slots:
                if other is not slot and other.alive and other.channel is not None:
                    if other.channel.backlog() > RELAY_BACKLOG_LIMIT:
                        self._replace_stalled(other)
                    else:
                        other.channel.write(frame)
        elif op == "load":
            slot.ended = header["ended"]
        elif op == "snapshot":
            slot.snapshot = orjson.loads(body)
            waiter = slot.waiting.pop(header["req"], None) if header["req"] else None
            if waiter is not None and not waiter.done():
                waiter.set_result(slot.snapshot)
        elif op == "collect":
            self._spawn_task(self._answer(channel, header["req"], self._collect()))
        elif op == "health":
            self._spawn_task(self._answer(channel, header["req"], self._health()))
        elif op == "hello":
            slot.hello.set()
        else:
            log.warning("worker %d sent unknown control op %r", slot.index, op)

    def _replace_stalled(self, slot: Slot) -> None:
        """A worker this far behind on deliveries has stopped serving: rather than buffer for it
        without bound, kill it; _watch restarts it and its clients reconnect elsewhere."""
        if slot.process is None or slot.process.returncode is not None:
            return
        log.error(
            "worker %d (pid %d) is more than %d bytes behind on deliveries; killing it",
            slot.index,
            slot.process.pid,
            RELAY_BACKLOG_LIMIT,
        )
        slot.alive = False  # no more hand-offs or relays; _watch does the rest
        with contextlib.suppress(ProcessLookupError):
            slot.process.kill()

    async def _answer(self, channel: ControlChannel, request: int, work: Any) -> None:
        channel.send({"op": "reply", "req": request}, orjson.dumps(await work))

    async def _fresh_snapshot(self, slot: Slot) -> Snapshot:
        """The worker's counters now; empty if it dies meanwhile (they are then in `retired`)."""
        if not slot.alive or slot.channel is None:
            return {}
        generation = slot.generation
        request = next(self._requests)
        waiter: asyncio.Future[Snapshot] = asyncio.get_running_loop().create_future()
        slot.waiting[request] = waiter
        slot.channel.send({"op": "snapshot_request", "req": request})
        try:
            snapshot = await asyncio.wait_for(waiter, SNAPSHOT_TIMEOUT)
        except TimeoutError:
            log.warning(
                "worker %d did not answer a metrics request in %.1fs; using its last one",
                slot.index,
                SNAPSHOT_TIMEOUT,
            )
            snapshot = slot.snapshot
        finally:
            slot.waiting.pop(request, None)
        return snapshot if slot.alive and slot.generation == generation else {}

    def _pool(self, workers: list[Snapshot]) -> Snapshot:
        """The workers' figures, what dead workers counted, and the supervisor's own."""
        return merge([*workers, self.retired, self.registry.snapshot()])

    async def _collect(self) -> Snapshot:
        return self._pool(
            list(await asyncio.gather(*(self._fresh_snapshot(slot) for slot in self.slots)))
        )

    def _merged_last_known(self) -> Snapshot:
        return self._pool([slot.snapshot for slot in self.slots])

    async def _health(self) -> dict[str, Any]:
        current = await self._collect()
        alive = sum(slot.alive for slot in self.slots)
        return health.evaluate(
            current, self.history.baseline(), len(self.slots), alive, self.thresholds
        )


class ListenError(OSError):
    """The port cannot be bound: reported before any worker starts."""


def serve(settings: Settings, thresholds: Sequence[Threshold]) -> None:
    """Bind the port (ListenError, before any worker starts), then run the pool."""
    from wsmon.loop import run

    supervisor = Supervisor(settings, thresholds)
    try:
        supervisor.listen()
    except OSError as exc:
        raise ListenError(exc.errno, exc.strerror or str(exc)) from None

    async def main() -> None:
        try:
            await supervisor.run()
        finally:
            for slot in supervisor.slots:
                if slot.process is not None and slot.process.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        slot.process.kill()

    run(main())
