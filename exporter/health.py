"""Service health from the metrics themselves: the same figures Prometheus sees, evaluated locally.

`/api/health` answers healthy | degraded | unhealthy with the checks behind it. Rates come from the
difference between the current merged snapshot and one taken about a minute earlier, so a burst of
errors an hour ago does not keep the service unhealthy.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from time import monotonic
from typing import Any, Final

from .metrics import Snapshot

HEALTHY: Final = "healthy"
DEGRADED: Final = "degraded"
UNHEALTHY: Final = "unhealthy"
_RANK: Final = {HEALTHY: 0, DEGRADED: 1, UNHEALTHY: 2}
WINDOW_SECONDS: Final = 60.0
SAMPLE_SECONDS: Final = 5.0


@dataclass(frozen=True)
class Threshold:
    """Degraded past `warn`, unhealthy past `critical`; `below` flips the direction."""

    warn: float
    critical: float
    below: bool = False

    def judge(self, value: float) -> str:
        def crossed(limit: float) -> bool:
            return value < limit if self.below else value > limit

        if crossed(self.critical):
            return UNHEALTHY
        if crossed(self.warn):
            return DEGRADED
        return HEALTHY


# The monitoring guide's healthy system (alerting/thresholds.yaml will take these over).
POOL_UTILIZATION = Threshold(warn=0.8, critical=0.9)
MESSAGE_SUCCESS = Threshold(warn=0.99, critical=0.98, below=True)
AVERAGE_LATENCY = Threshold(warn=0.1, critical=0.2)


def total(snapshot: Snapshot, name: str) -> float:
    return float(sum(row[1] for row in snapshot.get(name, ())))


def histogram_totals(snapshot: Snapshot, name: str) -> tuple[int, float]:
    rows = snapshot.get(name, ())
    return sum(sum(row[1]) for row in rows), sum(row[2] for row in rows)


class History:
    """Merged snapshots every SAMPLE_SECONDS, long enough back to span WINDOW_SECONDS."""

    def __init__(self) -> None:
        self._samples: deque[tuple[float, Snapshot]] = deque()

    def record(self, now: float, snapshot: Snapshot) -> None:
        self._samples.append((now, snapshot))
        while len(self._samples) > 1 and now - self._samples[1][0] >= WINDOW_SECONDS:
            self._samples.popleft()

    def baseline(self) -> Snapshot:
        return self._samples[0][1] if self._samples else {}


async def sample_forever(history: History, source: Callable[[], Snapshot]) -> None:
    while True:
        history.record(monotonic(), source())
        await asyncio.sleep(SAMPLE_SECONDS)


def _check(
    name: str, value: float | None, threshold: Threshold | None, detail: str
) -> dict[str, Any]:
    status = HEALTHY if value is None or threshold is None else threshold.judge(value)
    check: dict[str, Any] = {"name": name, "status": status, "value": value, "detail": detail}
    if threshold is not None:
        check["warn"] = threshold.warn
        check["critical"] = threshold.critical
    return check


def evaluate(
    current: Snapshot, baseline: Snapshot, workers_configured: int, workers_alive: int
) -> dict[str, Any]:
    checks: list[dict[str, Any]] = []
    if workers_alive >= workers_configured:
        workers_status = HEALTHY
    else:
        workers_status = UNHEALTHY if workers_alive == 0 else DEGRADED
    checks.append(
        {
            "name": "workers",
            "status": workers_status,
            "value": workers_alive,
            "detail": f"{workers_alive} of {workers_configured} workers running",
        }
    )

    active = total(current, "wsmon_connections_active")
    capacity = total(current, "wsmon_pool_capacity")
    utilization = active / capacity if capacity else None
    checks.append(
        _check(
            "pool_utilization",
            utilization,
            POOL_UTILIZATION,
            f"{active:.0f} of {capacity:.0f} connection slots in use",
        )
    )

    received = total(current, "wsmon_messages_received_total") - total(
        baseline, "wsmon_messages_received_total"
    )
    errors = total(current, "wsmon_message_errors_total") - total(
        baseline, "wsmon_message_errors_total"
    )
    success = 1.0 - errors / received if received > 0 else None
    checks.append(
        _check(
            "message_success_rate",
            success,
            MESSAGE_SUCCESS,
            f"{errors:.0f} errors in {received:.0f} messages over the last minute",
        )
    )

    count_now, sum_now = histogram_totals(current, "wsmon_message_latency_seconds")
    count_then, sum_then = histogram_totals(baseline, "wsmon_message_latency_seconds")
    handled = count_now - count_then
    average = (sum_now - sum_then) / handled if handled > 0 else None
    checks.append(
        _check(
            "average_latency_seconds",
            average,
            AVERAGE_LATENCY,
            f"mean handling time of {handled} messages over the last minute",
        )
    )

    status = max((check["status"] for check in checks), key=_RANK.__getitem__)
    return {"status": status, "checks": checks}
