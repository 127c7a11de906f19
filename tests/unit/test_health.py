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
        "client_error_ratio",
        "average_latency",
        "p99_latency",
        "pool_utilization",
        "connection_rejection_rate",
        "worker_imbalance",
        "slow_consumer_ratio",
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
    worker.failures["echo"].value = 100
    baseline = snapshot_of(worker)
    assert (
        health.evaluate(baseline, {}, 1, 1, DEFAULTS)["status"] == "unhealthy"
    )  # 10 % of messages failed overall
    worker.received["echo"].value += 1000
    assert health.evaluate(snapshot_of(worker), baseline, 1, 1, DEFAULTS)["status"] == "healthy"


def checks_of(worker: WorkerMetrics) -> tuple[str, dict[str, tuple[object, str]]]:
    """The verdict, and each check's (value, status), of one worker judged since it started."""
    document = health.evaluate(snapshot_of(worker), {}, 1, 1, DEFAULTS)
    return document["status"], {c["name"]: (c["value"], c["status"]) for c in document["checks"]}


def test_a_flood_of_client_errors_degrades_but_never_fails() -> None:
    """Issue 8: one client's bad input drove success to 25 % and /api/health to 503."""
    worker = WorkerMetrics(0, 100)
    worker.received["echo"].value = 250
    worker.received["invalid"].value = 750
    for _ in range(750):
        worker.client_error("invalid", "invalid_json")
    status, checks = checks_of(worker)
    assert status == "degraded"
    assert checks["message_success_rate"] == (1.0, "healthy")
    assert checks["message_error_rate"] == (0.0, "healthy")
    assert checks["client_error_ratio"] == (0.75, "degraded")


def test_slow_consumers_are_judged_only_in_numbers() -> None:
    worker = WorkerMetrics(0, 1000)
    worker.active.value = 90
    worker.slow_consumers_cut.value = 9  # under the minimum: each its client's network
    worker.dropped["slow_consumer"].value = 500  # deliveries they missed are not more cut-offs
    status, checks = checks_of(worker)
    assert (status, checks["slow_consumer_ratio"]) == ("healthy", (None, "healthy"))
    worker.slow_consumers_cut.value = 10  # 10 cut off beside 90 still open
    assert checks_of(worker)[1]["slow_consumer_ratio"] == (0.1, "degraded")
    worker.active.value = 0  # every one of them cut off
    assert checks_of(worker)[1]["slow_consumer_ratio"] == (1.0, "degraded")


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
