"""The pool's metrics: every worker's snapshot, what dead workers counted, the supervisor's own.

A scrape asks every live worker for a fresh snapshot (SNAPSHOT_TIMEOUT, then its last one) and
sums them with the counters of workers that died, so pool totals never go backwards, and with the
supervisor's own registry and the processes' /proc figures (process_metrics.py).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from collections.abc import Sequence

from . import process_metrics
from .caps import ADDRESS_LIMIT
from .control import Op
from .gate import HANDSHAKE_TIMEOUT, RATE_LIMITED
from .metrics import Cell, Registry, Sample, Snapshot, from_wire, merge, values, without_gauges
from .pool import Slot

log = logging.getLogger(__name__)

SNAPSHOT_TIMEOUT = 2.0


class PoolMetrics:
    def __init__(self, slots: Sequence[Slot]) -> None:
        self.slots = slots
        self.registry = Registry()
        self.registry["wsmon_workers_configured"].child().value = len(slots)
        self.alive: Cell = self.registry["wsmon_workers_alive"].child()
        self.restarts: list[Cell] = [
            self.registry["wsmon_worker_restarts_total"].child(str(slot.index)) for slot in slots
        ]
        self.no_worker: Cell = self.registry["wsmon_connections_rejected_total"].child("no_worker")
        refused = self.registry["wsmon_handshakes_refused_total"]
        # The gate's reasons; a worker counts origin, unauthenticated and user_limit.
        self.refused: dict[str, Cell] = {
            r: refused.child(r) for r in (RATE_LIMITED, HANDSHAKE_TIMEOUT, ADDRESS_LIMIT)
        }
        queued, most = (
            self.registry["wsmon_handoff_queued"],
            self.registry["wsmon_handoff_queued_max"],
        )
        self.queued: list[tuple[Cell, Cell]] = [
            (queued.child(str(slot.index)), most.child(str(slot.index))) for slot in slots
        ]
        self.retired: Snapshot = {}  # counters of workers that died, so pool totals never go back
        self._requests = itertools.count(1)

    def retire(self, slot: Slot) -> None:
        """A worker died: keep what it counted, and count its open connections as closed without
        a close frame (1006), so that opened - closed still equals active across the pool."""
        lost = sum(row.value for row in values(slot.snapshot, "wsmon_connections_active"))
        closed: Snapshot = {"wsmon_connections_closed_total": [Sample(("1006",), lost)]}
        self.retired = merge([self.retired, without_gauges(slot.snapshot), closed])
        slot.snapshot = {}
        for waiter in slot.waiting.values():
            if not waiter.done():
                waiter.set_result({})

    def received(self, slot: Slot, request: int | None, body: bytes) -> None:
        """A worker's snapshot: pushed every second (request None) or answering a request."""
        slot.snapshot = from_wire(body)
        waiter = slot.waiting.pop(request, None) if request else None
        if waiter is not None and not waiter.done():
            waiter.set_result(slot.snapshot)

    async def _fresh_snapshot(self, slot: Slot) -> Snapshot:
        """The worker's counters now; empty if it dies meanwhile (they are then in `retired`)."""
        if not slot.alive or slot.channel is None:
            return {}
        generation = slot.generation
        request = next(self._requests)
        waiter: asyncio.Future[Snapshot] = asyncio.get_running_loop().create_future()
        slot.waiting[request] = waiter
        slot.channel.send({"op": Op.SNAPSHOT_REQUEST, "req": request})
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

    def _pool(self, parts: Sequence[Snapshot]) -> Snapshot:
        for slot, (queued, most) in zip(self.slots, self.queued, strict=True):
            queued.value, most.value = len(slot.queued), slot.queued.most
        return merge([*parts, self.retired, self.registry.snapshot()])

    async def collect(self) -> Snapshot:
        """The pool's figures now, for /metrics and /api/health."""
        workers = await asyncio.gather(*(self._fresh_snapshot(slot) for slot in self.slots))
        # Read after the snapshots, so that a worker that died meanwhile is left out.
        pids = {
            str(s.index): s.process.pid for s in self.slots if s.alive and s.process is not None
        }
        pids[process_metrics.SUPERVISOR] = os.getpid()
        return self._pool([*workers, process_metrics.read(pids)])

    def last_known(self) -> Snapshot:
        """The pool's figures as last reported, without asking anyone (health sampling)."""
        return self._pool([slot.snapshot for slot in self.slots])
