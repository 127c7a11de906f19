"""/metrics exposition: byte for byte what prometheus_client writes for the same figures.

The reference here presents the snapshot to prometheus_client through its collector API and lets
prometheus_client's own encoders write it, in both formats a scraper may ask for.
"""

from __future__ import annotations

import random
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry
from prometheus_client.utils import floatToGoString

from wsmon import __version__
from wsmon.catalogue import CATALOGUE, COUNTER, HISTOGRAM
from wsmon.exporter.exposition import Exposition
from wsmon.exporter.metrics import HistogramSample, Sample, Snapshot, WorkerMetrics, merge

PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,"
    "text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)


class Reference:
    """The snapshot as prometheus_client metric families."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "wsmon_build_info",
            "wsmon version and Python version; always 1.",
            labels=("version", "python"),
        )
        info.add_metric((__version__, ".".join(map(str, sys.version_info[:3]))), 1)
        yield info
        for spec in CATALOGUE:
            rows = sorted(self.snapshot.get(spec.name, []), key=lambda row: row.labels)
            if not rows:
                continue
            metric: Any
            if spec.kind == HISTOGRAM:
                edges = [floatToGoString(b) for b in spec.buckets] + ["+Inf"]
                metric = HistogramMetricFamily(spec.name, spec.help, labels=spec.labels)
                for row in rows:
                    assert isinstance(row, HistogramSample)
                    cumulative = [sum(row.counts[: i + 1]) for i in range(len(row.counts))]
                    metric.add_metric(
                        row.labels, list(zip(edges, cumulative, strict=True)), row.sum
                    )
            else:
                kind = CounterMetricFamily if spec.kind == COUNTER else GaugeMetricFamily
                metric = kind(spec.name, spec.help, labels=spec.labels)
                for row in rows:
                    assert isinstance(row, Sample)
                    metric.add_metric(row.labels, row.value)
            yield metric


def reference(snapshot: Snapshot, accept: str) -> tuple[bytes, str]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(Reference(snapshot))
    encoder, content_type = choose_encoder(accept)
    return encoder(registry), content_type


def busy_pool(seed: int) -> Snapshot:
    rng = random.Random(seed)
    workers = [WorkerMetrics(index, 100) for index in range(3)]
    for worker in workers:
        worker.active.value = rng.randrange(100)
        for cell in (*worker.received.values(), *worker.sent.values(), *worker.closed.values()):
            cell.value = rng.randrange(10**6)
        for histogram in (*worker.latency.values(), worker.delivery_latency):
            for _ in range(50):
                histogram.observe(rng.expovariate(200))
        worker.fanout_recipients["broadcast"].observe(rng.randrange(20000))
        worker.client_error("chat", "not_in_room")
        worker.client_error("invalid", "invalid_json")
    return merge(w.registry.snapshot() for w in workers)


@pytest.mark.parametrize("accept", ["", "text/plain", PROMETHEUS_ACCEPT])
@pytest.mark.parametrize("seed", [1, 2])
def test_same_bytes_as_prometheus_client(accept: str, seed: int) -> None:
    snapshot = busy_pool(seed)
    exposition = Exposition()
    expected = reference(snapshot, accept)
    assert exposition.render(snapshot, accept) == expected
    # Again, now from the cached series prefixes, after the figures moved.
    moved = busy_pool(seed + 10)
    assert exposition.render(moved, accept) == reference(moved, accept)


def test_openmetrics_ends_with_eof_and_names_counter_families_without_total() -> None:
    body, content_type = Exposition().render(busy_pool(3), PROMETHEUS_ACCEPT)
    assert content_type.startswith("application/openmetrics-text")
    assert body.endswith(b"# EOF\n")
    assert b"# TYPE wsmon_messages_received counter\n" in body
    assert b'wsmon_messages_received_total{type="echo"}' in body
