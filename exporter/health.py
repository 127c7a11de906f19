"""Service health from the metrics themselves: thresholds.yaml's figures, evaluated locally.

`/api/health` answers healthy | degraded | unhealthy with the checks behind it. It judges the same
alerting/thresholds.yaml entries Prometheus alerts on (a warning crossed is degraded, a critical
one unhealthy), for every figure the pool can compute from its own merged snapshot; probe failure
and instance down need Prometheus and are left to it. Rates come from the difference between the
current snapshot and one taken about a minute earlier, so a burst of errors an hour ago does not
keep the service unhealthy; a threshold's `for` is Prometheus's business, not this minute's.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from time import monotonic
from typing import Any, Final

from wsmon.catalogue import SPECS
from wsmon.indicators import IMBALANCE_MIN_CONNECTIONS_PER_WORKER, SLOW_CONSUMER_MIN_CUTOFFS
from wsmon.thresholds import DEFAULT_THRESHOLDS, Threshold, load

from .metrics import Snapshot, histograms, values

HEALTHY: Final = "healthy"
DEGRADED: Final = "degraded"
UNHEALTHY: Final = "unhealthy"
_RANK: Final = {HEALTHY: 0, DEGRADED: 1, UNHEALTHY: 2}
_SEVERITY_STATUS: Final = {"warning": DEGRADED, "critical": UNHEALTHY}
WINDOW_SECONDS: Final = 60.0
SAMPLE_SECONDS: Final = 5.0
QUANTILE: Final = 0.99


def load_thresholds(path: str) -> tuple[Threshold, ...]:
    """What /api/health judges by: the `thresholds_file` setting, or (empty) the packaged
    alerting/thresholds.yaml. Raises ThresholdsError naming the entry and field of a bad entry.
    Read at start-up and again on SIGHUP (supervisor.py), which keeps the old set on an error."""
    return load(Path(path) if path else DEFAULT_THRESHOLDS)


def total(
    snapshot: Snapshot, name: str, keep: Callable[[dict[str, str]], bool] = lambda _: True
) -> float:
    """Sum of a counter or gauge over the series whose labels `keep` accepts."""
    names = SPECS[name].labels
    rows = values(snapshot, name)
    return float(sum(row.value for row in rows if keep(dict(zip(names, row.labels, strict=True)))))


def histogram_totals(snapshot: Snapshot, name: str) -> tuple[int, float]:
    rows = histograms(snapshot, name)
    return sum(sum(row.counts) for row in rows), sum(row.sum for row in rows)


def histogram_buckets(snapshot: Snapshot, name: str) -> list[int]:
    """Bucket counts (non-cumulative, +Inf last) summed over every series of a histogram."""
    counts = [0] * (len(SPECS[name].buckets) + 1)
    for row in histograms(snapshot, name):
        counts = [a + b for a, b in zip(counts, row.counts, strict=True)]
    return counts


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


# -- the figures thresholds.yaml names, over the window: (current, baseline) -> value or None ------
# None means nothing to judge (no traffic in the window, too few connections): never a crossing.


def _moved(
    current: Snapshot,
    baseline: Snapshot,
    name: str,
    keep: Callable[[dict[str, str]], bool] = lambda _: True,
) -> float:
    """How far a summed counter moved over the window."""
    return total(current, name, keep) - total(baseline, name, keep)


def _per_received(name: str) -> Callable[[Snapshot, Snapshot], float | None]:
    """How far counter `name` moved over the window, per message received in it."""

    def ratio(current: Snapshot, baseline: Snapshot) -> float | None:
        received = _moved(current, baseline, "wsmon_messages_received_total")
        return _moved(current, baseline, name) / received if received > 0 else None

    return ratio


# The service is judged by its own failures; what clients get wrong has its own, warning-only
# figure, so one abusive client can neither page on-call nor fail the load balancer's check.
_error_rate = _per_received("wsmon_message_failures_total")
_client_error_ratio = _per_received("wsmon_client_errors_total")


def _success_rate(current: Snapshot, baseline: Snapshot) -> float | None:
    errors = _error_rate(current, baseline)
    return None if errors is None else 1.0 - errors


def _average_latency(current: Snapshot, baseline: Snapshot) -> float | None:
    count_now, sum_now = histogram_totals(current, "wsmon_message_latency_seconds")
    count_then, sum_then = histogram_totals(baseline, "wsmon_message_latency_seconds")
    handled = count_now - count_then
    return (sum_now - sum_then) / handled if handled > 0 else None


def quantile(q: float, bounds: tuple[float, ...], counts: Iterable[int]) -> float | None:
    """Prometheus's histogram_quantile over non-cumulative bucket counts (+Inf last)."""
    cumulative: list[int] = []
    for count in counts:
        cumulative.append((cumulative[-1] if cumulative else 0) + count)
    if not cumulative or cumulative[-1] <= 0:
        return None
    rank = q * cumulative[-1]
    index = next(i for i, c in enumerate(cumulative) if c >= rank)
    if index == len(bounds):
        return bounds[-1]  # in the +Inf bucket: Prometheus answers the highest finite bound
    lower = bounds[index - 1] if index else 0.0
    below = cumulative[index - 1] if index else 0
    return lower + (bounds[index] - lower) * (rank - below) / (cumulative[index] - below)


def _p99(name: str) -> Callable[[Snapshot, Snapshot], float | None]:
    def p99(current: Snapshot, baseline: Snapshot) -> float | None:
        now, then = histogram_buckets(current, name), histogram_buckets(baseline, name)
        moved = (a - b for a, b in zip(now, then, strict=True))
        return quantile(QUANTILE, SPECS[name].buckets, moved)

    return p99


def _pool_utilization(current: Snapshot, _baseline: Snapshot) -> float | None:
    capacity = total(current, "wsmon_pool_capacity")
    return total(current, "wsmon_connections_active") / capacity if capacity > 0 else None


def _rejection_rate(current: Snapshot, baseline: Snapshot) -> float | None:
    # A drain refuses connections on purpose; only the other reasons degrade service.
    rejected = _moved(
        current,
        baseline,
        "wsmon_connections_rejected_total",
        lambda labels: labels["reason"] != "draining",
    )
    attempted = _moved(current, baseline, "wsmon_connections_opened_total") + rejected
    return rejected / attempted if attempted > 0 else None


def _worker_imbalance(current: Snapshot, _baseline: Snapshot) -> float | None:
    active = [row.value for row in values(current, "wsmon_connections_active")]
    if not active or sum(active) < IMBALANCE_MIN_CONNECTIONS_PER_WORKER * len(active):
        return None
    return float(max(active) / max(min(active), 1))


def _slow_consumer_ratio(current: Snapshot, baseline: Snapshot) -> float | None:
    cut_off = _moved(current, baseline, "wsmon_slow_consumers_disconnected_total")
    if cut_off < SLOW_CONSUMER_MIN_CUTOFFS:
        return None  # one client's bad network, not the service's
    # Those cut off have left the gauge: the share is of those open now plus those cut off.
    return cut_off / (cut_off + total(current, "wsmon_connections_active"))


# The indicators of wsmon/indicators.py that the pool can compute (the PromQL twins are in
# alerting/rules.libsonnet).
LOCAL_INDICATORS: Final[dict[str, Callable[[Snapshot, Snapshot], float | None]]] = {
    "message_error_rate": _error_rate,
    "message_success_rate": _success_rate,
    "client_error_ratio": _client_error_ratio,
    "average_latency": _average_latency,
    "p99_latency": _p99("wsmon_message_latency_seconds"),
    "pool_utilization": _pool_utilization,
    "connection_rejection_rate": _rejection_rate,
    "worker_imbalance": _worker_imbalance,
    "slow_consumer_ratio": _slow_consumer_ratio,
    "broadcast_time": _p99("wsmon_broadcast_duration_seconds"),
}


def _indicator_check(
    metric: str, thresholds: list[Threshold], current: Snapshot, baseline: Snapshot
) -> dict[str, Any]:
    value = LOCAL_INDICATORS[metric](current, baseline)
    crossed = [t for t in thresholds if value is not None and t.holds(value)]
    status = max(
        (_SEVERITY_STATUS[t.severity] for t in crossed), key=_RANK.__getitem__, default=HEALTHY
    )
    indicator = thresholds[0].indicator
    shown = "nothing to judge" if value is None else indicator.display(value)
    return {
        "name": metric,
        "status": status,
        "value": value,
        "detail": f"{shown}: {indicator.meaning}",
        "thresholds": [
            {
                "alert": t.name,
                "severity": t.severity,
                "condition": t.condition,
                "value": t.value,
                "crossed": t in crossed,
            }
            for t in thresholds
        ],
    }


def evaluate(
    current: Snapshot,
    baseline: Snapshot,
    workers_configured: int,
    workers_alive: int,
    thresholds: Iterable[Threshold],
) -> dict[str, Any]:
    """The /api/health document."""
    if workers_alive >= workers_configured:
        workers_status = HEALTHY
    else:
        workers_status = UNHEALTHY if workers_alive == 0 else DEGRADED
    checks: list[dict[str, Any]] = [
        {
            "name": "workers",
            "status": workers_status,
            "value": workers_alive,
            "detail": f"{workers_alive} of {workers_configured} workers running",
        }
    ]
    by_metric: dict[str, list[Threshold]] = {}
    for threshold in thresholds:
        if threshold.enabled and threshold.metric in LOCAL_INDICATORS:
            by_metric.setdefault(threshold.metric, []).append(threshold)
    checks.extend(
        _indicator_check(metric, group, current, baseline) for metric, group in by_metric.items()
    )
    return {"status": _worst(checks), "checks": checks}


def add_check(document: dict[str, Any], check: dict[str, Any]) -> None:
    """One more check in an /api/health document, its status counted in the document's."""
    document["checks"].append(check)
    document["status"] = _worst(document["checks"])


def _worst(checks: Iterable[dict[str, Any]]) -> str:
    statuses: list[str] = [check["status"] for check in checks]
    return max(statuses, key=_RANK.__getitem__)
