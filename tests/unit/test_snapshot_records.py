"""Snapshot rows as typed records, and their wire form: what crosses the control channel comes
back as the same records."""

from __future__ import annotations

from wsmon.exporter.metrics import (
    HistogramSample,
    Sample,
    WorkerMetrics,
    from_wire,
    histograms,
    merge,
    to_wire,
    values,
)


def busy_worker() -> WorkerMetrics:
    worker = WorkerMetrics(3, 100)
    worker.active.value = 7
    worker.received["echo"].value = 12
    worker.latency["echo"].observe(0.0003)
    worker.latency["echo"].observe(42.0)  # the +Inf bucket
    return worker


def test_registry_snapshot_is_typed_records_keyed_by_label_tuples() -> None:
    snapshot = busy_worker().registry.snapshot()
    assert Sample(("3",), 7) in snapshot["wsmon_connections_active"]
    (latency,) = [
        r for r in histograms(snapshot, "wsmon_message_latency_seconds") if r.labels == ("echo",)
    ]
    assert isinstance(latency, HistogramSample)
    assert (sum(latency.counts), latency.counts[-1], latency.sum) == (2, 1, 42.0003)
    assert values(snapshot, "wsmon_message_latency_seconds") == []  # no plain series there


def test_wire_round_trip_gives_equal_records() -> None:
    snapshot = merge([busy_worker().registry.snapshot(), busy_worker().registry.snapshot()])
    back = from_wire(to_wire(snapshot))
    assert back == snapshot
    # Labels come back as tuples (hashable: merge and the exposition's prefix cache key on them).
    assert all(isinstance(row.labels, tuple) for rows in back.values() for row in rows)
    assert {type(row) for row in back["wsmon_message_latency_seconds"]} == {HistogramSample}
    assert {type(row) for row in back["wsmon_messages_received_total"]} == {Sample}


def test_wire_form_is_positional_arrays() -> None:
    """Rows travel as arrays (labels, value) or (labels, counts, sum), not objects: fewer bytes to
    write and read on every scrape."""
    wire = to_wire({"wsmon_connections_active": [Sample(("0",), 2)]})
    assert wire == b'{"wsmon_connections_active":[[["0"],2]]}'
