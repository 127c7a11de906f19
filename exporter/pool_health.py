"""/api/health for the pool: the merged snapshot judged against one taken about a minute earlier
(health.py), from history the supervisor samples every few seconds."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from wsmon.thresholds import Threshold

from . import health
from .pool import Slot
from .pool_metrics import PoolMetrics


class PoolHealth:
    def __init__(
        self, slots: Sequence[Slot], metrics: PoolMetrics, thresholds: Sequence[Threshold]
    ) -> None:
        self.slots = slots
        self.thresholds = thresholds  # what /api/health judges by
        self.history = health.History()
        self._metrics = metrics

    async def sample_forever(self) -> None:
        # From what the workers last pushed: sampling never waits on them.
        await health.sample_forever(self.history, self._metrics.last_known)

    async def document(self) -> dict[str, Any]:
        current = await self._metrics.collect()
        alive = sum(slot.alive for slot in self.slots)
        return health.evaluate(
            current, self.history.baseline(), len(self.slots), alive, self.thresholds
        )
