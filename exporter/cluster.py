"""A worker's view of the rest of the pool: relaying deliveries, gathering metrics, judging health.

`Supervised` is a worker of `wsmon serve`: it talks to the supervisor over its control channel,
which relays deliveries to the other workers and merges every worker's metrics for /metrics and
/api/health. The handler tests give a worker a pool of one instead (tests/support/standalone.py).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson

from .control import ControlChannel, Op
from .hub import Hub
from .metrics import Registry, Snapshot, from_wire, to_wire

log = logging.getLogger(__name__)

COLLECT_TIMEOUT = 5.0


class Cluster(ABC):
    @abstractmethod
    def relay(
        self, message_type: str, route: str, name: str, payload: bytes, enqueued: float
    ) -> None:
        """Hand a delivery to the other workers (their local recipients get it)."""

    @abstractmethod
    async def collect(self) -> Snapshot:
        """The pool's metrics: every worker's cells summed, plus what dead workers counted."""

    @abstractmethod
    async def health(self) -> dict[str, Any]:
        """The /api/health document."""

    @abstractmethod
    async def claim_user(self, user: str) -> bool:
        """One more connection for `user`, or False when it holds max_connections_per_user."""

    @abstractmethod
    def user_ended(self, user: str) -> None:
        """A connection `claim_user` allowed has ended."""

    async def start(self) -> None:
        """Begin background work (after the event loop runs)."""
        return None

    async def stop(self) -> None:
        """End background work."""
        return None


class Supervised(Cluster):
    """The worker end of the control channel (supervisor.py holds the other end)."""

    def __init__(
        self, channel: ControlChannel, registry: Registry, hub: Hub, on_drain: Callable[[], None]
    ) -> None:
        self._channel = channel
        self._registry = registry
        self._hub = hub
        self._on_drain = on_drain
        self._requests: dict[int, asyncio.Future[bytes]] = {}
        self._ids = itertools.count(1)
        self._tasks: list[asyncio.Task[None]] = []
        self._load_report: asyncio.Handle | None = None
        self._ended = 0  # TCP connections handed to this worker that have since closed
        # Since the last report, by key, when caps count them (caps.py).
        self._addresses_ended: Counter[str] = Counter()
        self._users_ended: Counter[str] = Counter()

    def relay(
        self, message_type: str, route: str, name: str, payload: bytes, enqueued: float
    ) -> None:
        self._channel.send(
            {"op": Op.RELAY, "type": message_type, "route": route, "name": name, "t": enqueued},
            payload,
        )

    async def _ask(self, op: Op, **fields: str) -> bytes:
        request = next(self._ids)
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._requests[request] = future
        try:
            self._channel.send({"op": op, "req": request, **fields})
            return await asyncio.wait_for(future, COLLECT_TIMEOUT)
        finally:
            self._requests.pop(request, None)

    async def collect(self) -> Snapshot:
        return from_wire(await self._ask(Op.COLLECT))

    async def health(self) -> dict[str, Any]:
        document: dict[str, Any] = orjson.loads(await self._ask(Op.HEALTH))
        return document

    async def claim_user(self, user: str) -> bool:
        try:
            return await self._ask(Op.CLAIM, user=user) == b"1"
        except TimeoutError:
            # A supervisor that has not answered in 5 s is an outage of its own: the cap is
            # for abuse, so the client is let in. Its end is reported all the same, and the
            # supervisor frees only a claim it made (caps.Tally._take).
            log.error("the supervisor did not answer a connection claim; admitting it")
            return True

    def user_ended(self, user: str) -> None:
        self._users_ended[user] += 1
        self._schedule_report()

    def connection_ended(self, address: str | None = None) -> None:
        """One of the connections the supervisor handed over has closed (with the address it was
        handed with, when the per-address cap counts it).

        The supervisor balances on handed-over minus ended: exact for every connection from the
        moment it is handed over, whether it is still in its handshake or plain HTTP, and a late
        report can only make this worker look busier, never idler, than it is.
        """
        self._ended += 1
        if address is not None:
            self._addresses_ended[address] += 1
        self._schedule_report()

    def _schedule_report(self) -> None:
        # Coalesce a burst of disconnects into one report a few milliseconds later.
        if self._load_report is None:
            self._load_report = asyncio.get_running_loop().call_later(0.005, self._report_load)

    def _report_load(self) -> None:
        self._load_report = None
        header: dict[str, Any] = {"op": Op.LOAD, "ended": self._ended}
        if self._addresses_ended:
            header["addresses"] = dict(self._addresses_ended)
            self._addresses_ended.clear()
        if self._users_ended:
            header["users"] = dict(self._users_ended)
            self._users_ended.clear()
        self._channel.send(header)

    def _push_snapshot(self, request: int | None) -> None:
        self._channel.send({"op": Op.SNAPSHOT, "req": request}, to_wire(self._registry.snapshot()))

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._read()), asyncio.create_task(self._push())]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        self._channel.close()

    async def _push(self) -> None:
        # Periodic snapshots bound what a crash can lose from the pool's counters to one second.
        while True:
            await asyncio.sleep(1.0)
            self._push_snapshot(None)

    async def _read(self) -> None:
        while (frame := await self._channel.receive()) is not None:
            try:
                self._handle(*frame)
            except Exception:  # one bad frame must not end this worker's link to the pool
                log.exception("bad control frame %r from the supervisor", frame[0])
        log.error("control channel to the supervisor closed; draining")
        self._on_drain()

    def _handle(self, header: dict[str, Any], body: bytes) -> None:
        match header["op"]:
            case Op.RELAY:
                self._hub.deliver(
                    header["type"], header["route"], header["name"], body, None, header["t"]
                )
            case Op.SNAPSHOT_REQUEST:
                self._push_snapshot(header["req"])
            case Op.REPLY:
                future = self._requests.get(header["req"])
                if future is not None and not future.done():
                    future.set_result(body)
            case Op.DRAIN:
                self._on_drain()
            case op:
                log.warning("unknown control op %r from supervisor", op)
