"""/api/health for the pool: the merged snapshot judged against one taken about a minute earlier
(health.py), from history the supervisor samples every few seconds."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from wsmon.thresholds import Threshold

from . import health
from .broker import Broker, shown
from .pool import Slot
from .pool_metrics import PoolMetrics


class PoolHealth:
    def __init__(
        self, slots: Sequence[Slot], metrics: PoolMetrics, thresholds: Sequence[Threshold]
    ) -> None:
        self.slots = slots
        self.thresholds = thresholds  # what /api/health judges by
        self.history = health.History()
        self.broker: Broker | None = None  # with one, a broker that is down degrades health
        self._metrics = metrics

    async def sample_forever(self) -> None:
        # From what the workers last pushed: sampling never waits on them.
        await health.sample_forever(self.history, self._metrics.last_known)

    async def document(self) -> dict[str, Any]:
        current = await self._metrics.collect()
        alive = sum(slot.alive for slot in self.slots)
        document = health.evaluate(
            current, self.history.baseline(), len(self.slots), alive, self.thresholds
        )
        if self.broker is not None:
            health.add_check(document, self._broker_check(self.broker))
        return document

    @staticmethod
    def _broker_check(broker: Broker) -> dict[str, Any]:
        """Degraded, never unhealthy, while the broker is down: this instance serves its own
        clients all the same, and taking it out of a load balancer would help no one."""
        up = broker.up
        where = shown(broker.url)
        return {
            "name": "broker",
            "status": health.HEALTHY if up else health.DEGRADED,
            "value": 1 if up else 0,
            "detail": f"connected to {where}"
            if up
            else f"{where} unreachable: deliveries to other instances are lost",
        }
