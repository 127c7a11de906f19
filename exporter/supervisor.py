"""`wsmon serve`: the supervisor that owns the ports and a pool of worker processes.

It is put together from one part per job: handoff.py accepts every TCP connection and passes it to
the least-loaded worker, caps.py counts connections per address and per user, pool.py starts,
restarts and drains the worker processes, relay.py forwards deliveries between workers,
pool_metrics.py merges their metrics for /metrics and pool_health.py samples them for /api/health.
This module routes each worker's control frames to the part that handles them, on SIGTERM drains
every worker before it exits, and on SIGHUP re-reads the thresholds /api/health judges by (a bad
file keeps the set in use, and the log says why).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import signal
from collections.abc import Awaitable, Sequence
from typing import Any

import orjson

from wsmon import __version__
from wsmon.thresholds import Threshold, ThresholdsError

from . import broker
from .broker import Broker, BrokerMetrics
from .caps import Tally
from .config import Settings
from .control import OPERATIONS, ControlChannel, Op
from .handoff import Handoff
from .health import load_thresholds
from .metrics import to_wire
from .pool import Pool, Slot
from .pool_health import PoolHealth
from .pool_metrics import PoolMetrics
from .relay import Relay
from .tasks import Background

log = logging.getLogger(__name__)


class Supervisor:
    def __init__(
        self, settings: Settings, thresholds: Sequence[Threshold], operations_tls: bool = False
    ) -> None:
        self.settings = settings
        self.operations_tls = operations_tls  # metrics_listen serves https (the CLI read it)
        self.slots = [Slot(index) for index in range(settings.workers)]
        self.tasks = Background()
        self.metrics = PoolMetrics(self.slots)
        self.health = PoolHealth(self.slots, self.metrics, thresholds)
        self.addresses = Tally(settings.max_connections_per_address)
        self.users = Tally(settings.max_connections_per_user)
        self.handoff = Handoff(
            settings, self.slots, self.addresses, self.metrics.no_worker, self.metrics.refused
        )
        self.pool = Pool(
            settings,
            self.slots,
            self.tasks,
            alive=self.metrics.alive,
            restarts=self.metrics.restarts,
            read_control=self._read,
            on_exit=(self.metrics.retire, self.handoff.release, self._forget),
        )
        self.relay = Relay(self.slots, self.pool.replace)
        self.broker = (
            Broker(
                settings.broker,
                settings.broker_password_file,
                settings.broker_channel,
                BrokerMetrics(self.metrics.registry),
                lambda header, body: self.relay.forward(None, header, body),
            )
            if settings.broker
            else None
        )
        self.health.broker = self.broker
        self._stopped = asyncio.Event()

    async def run(self) -> None:
        """Start the workers, then accept (the port is bound already: serve)."""
        loop = asyncio.get_running_loop()
        address = self.handoff.address()
        assert address is not None
        # The workers are told the port actually bound (0 picks one): a probe on metrics_listen
        # connects to it.
        self.pool.settings = dataclasses.replace(self.settings, port=address[1])
        await self.pool.start()
        if self.broker is not None:
            self.broker.start()
        self.handoff.start()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, lambda: self.tasks.spawn(self.drain()))
        # Without a handler SIGHUP would end the server: `systemctl reload` and
        # `wsmon thresholds ... --apply` send it to have the thresholds read again.
        loop.add_signal_handler(signal.SIGHUP, self.reload_thresholds)
        log.info(
            "wsmon %s serving on http://%s:%d with %d workers (capacity %d each)",
            __version__,
            *address,
            len(self.slots),
            self.settings.worker_capacity,
        )
        if self.broker is not None:
            log.info(
                "delivering to the other instances through %s (channel %s)",
                broker.shown(self.settings.broker),
                self.broker.channel,
            )
        operations = self.handoff.address(OPERATIONS)
        if operations is not None:
            scheme = "https" if self.operations_tls else "http"
            log.info("/metrics and the health endpoints on %s://%s:%d", scheme, *operations)
        self.tasks.spawn(self.health.sample_forever())
        await self._stopped.wait()

    async def drain(self) -> None:
        """Stop accepting, ask every worker to close its connections with 1001, then exit."""
        if self.pool.draining:
            return
        log.info("draining: closing connections (at most %.1fs)", self.settings.drain_seconds)
        self.handoff.close()
        await self.pool.drain()
        if self.broker is not None:
            await self.broker.stop()
        log.info("drained; exiting")
        self._stopped.set()

    def reload_thresholds(self) -> bool:
        """Read the thresholds file again (SIGHUP); /api/health judges by the new set from its
        next answer. A file that does not load keeps the set in use: one log line says why."""
        path = self.settings.thresholds_file or "the packaged thresholds.yaml"
        try:
            thresholds = load_thresholds(self.settings.thresholds_file)
        except ThresholdsError as exc:
            # Each problem names the file, its entry and field; one line for the log.
            problems = "; ".join(str(exc).splitlines())
            log.error("SIGHUP: thresholds not reloaded, the set in use is kept: %s", problems)
            return False
        self.health.thresholds = thresholds
        enabled = sum(t.enabled for t in thresholds)
        log.info(
            "SIGHUP: /api/health judges by %s now (%d thresholds, %d enabled)",
            path,
            len(thresholds),
            enabled,
        )
        return True

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
        match header["op"]:
            case Op.RELAY:
                self.relay.forward(slot, header, body)
                if self.broker is not None:
                    self.broker.publish(header, body)
            case Op.LOAD:
                slot.ended = header["ended"]  # what handoff.py balances on
                self.addresses.release_all(header.get("addresses", {}), slot.index)
                self.users.release_all(header.get("users", {}), slot.index)
            case Op.CLAIM:
                allowed = self.users.claim(header["user"], slot.index)
                channel.send({"op": Op.REPLY, "req": header["req"]}, b"1" if allowed else b"")
            case Op.SNAPSHOT:
                self.metrics.received(slot, header["req"], body)
            case Op.COLLECT:
                self.tasks.spawn(self._answer(channel, header["req"], self._collect()))
            case Op.HEALTH:
                self.tasks.spawn(self._answer(channel, header["req"], self._health()))
            case Op.HELLO:
                slot.hello.set()
            case op:
                log.warning("worker %d sent unknown control op %r", slot.index, op)

    def _forget(self, slot: Slot) -> None:
        """A worker died: its connections, and so its claims on the caps, are gone."""
        self.addresses.forget(slot.index)
        self.users.forget(slot.index)

    async def _collect(self) -> bytes:
        return to_wire(await self.metrics.collect())

    async def _health(self) -> bytes:
        return orjson.dumps(await self.health.document())

    async def _answer(self, channel: ControlChannel, request: int, body: Awaitable[bytes]) -> None:
        channel.send({"op": Op.REPLY, "req": request}, await body)


def serve(
    settings: Settings, thresholds: Sequence[Threshold], operations_tls: bool = False
) -> None:
    """Bind the ports (handoff.ListenError, before any worker starts), then run the pool."""
    from wsmon.loop import run

    supervisor = Supervisor(settings, thresholds, operations_tls)
    supervisor.handoff.listen()

    async def main() -> None:
        try:
            await supervisor.run()
        finally:
            supervisor.pool.kill()

    run(main())
