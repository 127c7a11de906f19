"""Local cells, snapshots, the supervisor's merge, and what /metrics makes of them."""

import sys

from prometheus_client.parser import text_string_to_metric_families

from wsmon import __version__
from wsmon.exporter.exposition import Exposition
from wsmon.exporter.metrics import (
    Histogram,
    Registry,
    WorkerMetrics,
    histograms,
    merge,
    without_gauges,
)


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
    }


def test_histogram_bucket_edges_are_inclusive() -> None:
    histogram = Histogram((0.1, 0.2))
    for value in (0.05, 0.1, 0.15, 0.2, 5.0):
        histogram.observe(value)
    assert histogram.counts == [2, 2, 1]
    assert histogram.sum == 5.5


def test_merge_sums_counters_keeps_gauges_per_worker() -> None:
    workers = [WorkerMetrics(0, 10), WorkerMetrics(1, 10)]
    for index, worker in enumerate(workers):
        worker.received["echo"].value += 3 + index
        worker.active.value = 2 + index
        worker.latency["echo"].observe(0.001)
        worker.client_error("invalid", "invalid_json")
    exposed = samples(Exposition().render(merge(w.registry.snapshot() for w in workers), None)[0])
    assert exposed[("wsmon_messages_received_total", (("type", "echo"),))] == 7
    assert exposed[("wsmon_connections_active", (("worker", "0"),))] == 2
    assert exposed[("wsmon_connections_active", (("worker", "1"),))] == 3
    key = ("wsmon_client_errors_total", (("reason", "invalid_json"), ("type", "invalid")))
    assert exposed[key] == 2
    bucket = ("wsmon_message_latency_seconds_bucket", (("le", "0.001"), ("type", "echo")))
    assert exposed[bucket] == 2
    assert exposed[("wsmon_message_latency_seconds_count", (("type", "echo"),))] == 2
    python = ".".join(map(str, sys.version_info[:3]))
    assert exposed[("wsmon_build_info", (("python", python), ("version", __version__)))] == 1


def test_dead_worker_leaves_counters_not_gauges() -> None:
    worker = WorkerMetrics(0, 10)
    worker.opened.value = 5
    worker.active.value = 5
    retired = without_gauges(worker.registry.snapshot())
    exposed = samples(Exposition().render(merge([retired]), None)[0])
    assert exposed[("wsmon_connections_opened_total", (("worker", "0"),))] == 5
    assert ("wsmon_connections_active", (("worker", "0"),)) not in exposed


def test_merge_does_not_alias_its_inputs() -> None:
    worker = WorkerMetrics(0, 10)
    worker.latency["ping"].observe(0.5)
    snapshot = worker.registry.snapshot()
    merged = merge([snapshot])
    merged = merge([merged, snapshot])
    rows = {r.labels: r for r in histograms(snapshot, "wsmon_message_latency_seconds")}
    assert sum(rows[("ping",)].counts) == 1  # the input snapshot was not mutated by merging twice
    merged_rows = {r.labels: r for r in histograms(merged, "wsmon_message_latency_seconds")}
    assert sum(merged_rows[("ping",)].counts) == 2


def test_openmetrics_is_served_when_asked_for() -> None:
    body, content_type = Exposition().render(Registry().snapshot(), "application/openmetrics-text")
    assert content_type.startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")
