"""A worker with no supervisor, for the handler tests: a pool of one, served by pytest-aiohttp.

`wsmon serve` always runs a supervisor; this stands in for it in-process, with the same metrics
merge and health evaluation, so a handler test needs no subprocess.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from wsmon.exporter import health
from wsmon.exporter.app import Worker
from wsmon.exporter.caps import Tally
from wsmon.exporter.cluster import Cluster
from wsmon.exporter.config import Settings
from wsmon.exporter.metrics import Registry, Snapshot, merge
from wsmon.thresholds import Threshold


class Standalone(Cluster):
    def __init__(
        self, registry: Registry, thresholds: Sequence[Threshold], user_cap: int = 0
    ) -> None:
        self._registry = registry
        self._thresholds = thresholds
        self.users = Tally(user_cap)  # the supervisor's count, for a pool of one
        self._pool = Registry()
        self._pool["wsmon_workers_configured"].child().value = 1
        self._pool["wsmon_workers_alive"].child().value = 1
        self._history = health.History()
        self._sampler: asyncio.Task[None] | None = None

    def relay(
        self, message_type: str, route: str, name: str, payload: bytes, enqueued: float
    ) -> None:
        return None

    async def claim_user(self, user: str) -> bool:
        return self.users.claim(user, 0)

    def user_ended(self, user: str) -> None:
        self.users.release(user, 0)

    def _snapshot(self) -> Snapshot:
        return merge([self._registry.snapshot(), self._pool.snapshot()])

    async def collect(self) -> Snapshot:
        return self._snapshot()

    async def health(self) -> dict[str, Any]:
        return health.evaluate(self._snapshot(), self._history.baseline(), 1, 1, self._thresholds)

    async def start(self) -> None:
        self._sampler = asyncio.create_task(health.sample_forever(self._history, self._snapshot))

    async def stop(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()


WORKER = web.AppKey("worker", Worker)


def standalone_app(settings: Settings, index: int = 0) -> web.Application:
    """A single worker with no supervisor."""
    thresholds = health.load_thresholds(settings.thresholds_file)
    cap = settings.max_connections_per_user
    worker = Worker(
        settings, index, lambda metrics, hub: Standalone(metrics.registry, thresholds, cap)
    )
    app = worker.application()
    app[WORKER] = worker
    return app
