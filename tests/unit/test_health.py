"""Health judged from the metrics: thresholds, windows and the worst check."""

from wsmon.exporter import health
from wsmon.exporter.metrics import WorkerMetrics

DEFAULTS = health.load_thresholds("")  # the packaged alerting/thresholds.yaml


def snapshot_of(worker: WorkerMetrics) -> dict:  # type: ignore[type-arg]
    return worker.registry.snapshot()


def test_idle_pool_is_healthy() -> None:
    document = health.evaluate(snapshot_of(WorkerMetrics(0, 10)), {}, 1, 1, DEFAULTS)
    assert document["status"] == "healthy"
    # One check per figure of alerting/thresholds.yaml the pool can compute, and the workers.
    assert {c["name"] for c in document["checks"]} == {
        "workers",
        "message_error_rate",
        "message_success_rate",
        "average_latency",
        "p99_latency",
        "pool_utilization",
        "connection_rejection_rate",
        "worker_imbalance",
        "broadcast_time",
    }


def test_pool_utilization_degrades_then_fails() -> None:
    worker = WorkerMetrics(0, 10)
    worker.active.value = 8
    assert health.evaluate(snapshot_of(worker), {}, 1, 1, DEFAULTS)["status"] == "healthy"
    worker.active.value = 9
    assert health.evaluate(snapshot_of(worker), {}, 1, 1, DEFAULTS)["status"] == "degraded"
    worker.active.value = 10
    assert health.evaluate(snapshot_of(worker), {}, 1, 1, DEFAULTS)["status"] == "unhealthy"


def test_error_rate_counts_only_the_window() -> None:
    worker = WorkerMetrics(0, 100)
    worker.received["echo"].value = 1000
    for _ in range(100):
        worker.error("echo", "rate_limited")
    baseline = snapshot_of(worker)
    assert (
        health.evaluate(baseline, {}, 1, 1, DEFAULTS)["status"] == "unhealthy"
    )  # 10 % errors overall
    worker.received["echo"].value += 1000
    assert health.evaluate(snapshot_of(worker), baseline, 1, 1, DEFAULTS)["status"] == "healthy"


def test_slow_handling_and_missing_workers() -> None:
    worker = WorkerMetrics(0, 100)
    worker.latency["echo"].observe(0.15)
    assert health.evaluate(snapshot_of(worker), {}, 1, 1, DEFAULTS)["status"] == "degraded"
    assert health.evaluate(snapshot_of(worker), {}, 2, 0, DEFAULTS)["status"] == "unhealthy"


def test_history_keeps_a_window_long_baseline() -> None:
    history = health.History()
    for second in range(0, 120, 5):
        history.record(float(second), {"t": [[[], second]]})
    assert history.baseline()["t"][0][1] == 115 - 60  # the newest sample a window old
