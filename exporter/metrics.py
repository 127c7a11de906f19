"""A worker's metric cells, their snapshots, and how the pool sums them: the design that keeps
metrics cheap. Every metric is declared once, in the core's catalogue (wsmon/catalogue.py).

The per-message path never calls prometheus_client: it adds to plain Python cells (an int attribute)
and histogram bucket lists that were bound to their labels at start-up. Each worker hands a snapshot
of those cells to the supervisor, which sums the workers' snapshots (plus what workers that died had
counted) when /metrics is scraped, and exposition.py writes the sum. prometheus_client's
multiprocess mode would cost 2-3x its in-process calls on every message
(measured before wsmon was written: docs/performance.md).

Label values are bounded enums (worker index, message type, reason, close code); never a user, room,
connection or address.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass
from operator import add
from typing import Any

import orjson

from wsmon.catalogue import (
    CATALOGUE,
    CLOSE_CODES,
    DROP_REASONS,
    FANOUT_TYPES,
    GAUGE,
    HISTOGRAM,
    OTHER,
    SPECS,
    Spec,
)

from . import protocol
from .caps import USER_LIMIT


class Cell:
    """One counter or gauge value. The hot path does `cell.value += 1`."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value: float = 0


class Histogram:
    """Bucket counts (non-cumulative, the last is +Inf) and a sum; cumulated only at render time."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        # bisect_left: a value equal to a bound belongs to that bound's bucket (le is "<=").
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def observe_many(self, value: float, times: int) -> None:
        self.counts[bisect_left(self.bounds, value)] += times
        self.sum += value * times


Child = Cell | Histogram
LabelValues = tuple[str, ...]


class Family:
    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.children: dict[LabelValues, Child] = {}

    def child(self, *labels: str) -> Any:
        """Bind (once) and return the child for these label values."""
        if len(labels) != len(self.spec.labels):
            raise ValueError(f"{self.spec.name} takes labels {self.spec.labels}, got {labels}")
        found = self.children.get(labels)
        if found is None:
            found = Histogram(self.spec.buckets) if self.spec.kind == HISTOGRAM else Cell()
            self.children[labels] = found
        return found


@dataclass(slots=True)
class Sample:
    """A counter's or gauge's series in a snapshot."""

    labels: LabelValues
    value: float


@dataclass(slots=True)
class HistogramSample:
    """A histogram's series in a snapshot: bucket counts (non-cumulative, +Inf last) and sum."""

    labels: LabelValues
    counts: list[int]
    sum: float


Row = Sample | HistogramSample
# A snapshot: metric name -> its series. It crosses the control channel only as to_wire/from_wire.
Snapshot = dict[str, list[Row]]


class Registry:
    """The metric families one process owns, and their snapshot for the supervisor."""

    def __init__(self) -> None:
        self.families = {spec.name: Family(spec) for spec in CATALOGUE}

    def __getitem__(self, name: str) -> Family:
        return self.families[name]

    def snapshot(self) -> Snapshot:
        out: Snapshot = {}
        for name, family in self.families.items():
            rows: list[Row] = [
                HistogramSample(labels, list(child.counts), child.sum)
                if isinstance(child, Histogram)
                else Sample(labels, child.value)
                for labels, child in family.children.items()
            ]
            if rows:
                out[name] = rows
        return out


def merge(snapshots: Iterable[Snapshot]) -> Snapshot:
    """Sum snapshots series by series (gauges carry a worker label, so they never collide).

    The result shares nothing mutable with its inputs, so merging it again changes no input."""
    totals: dict[str, dict[LabelValues, Row]] = {}
    for snapshot in snapshots:
        for name, rows in snapshot.items():
            series = totals.setdefault(name, {})
            for row in rows:
                have = series.get(row.labels)
                if isinstance(row, HistogramSample):
                    if have is None:
                        series[row.labels] = HistogramSample(row.labels, list(row.counts), row.sum)
                    else:
                        assert isinstance(have, HistogramSample), name
                        if len(have.counts) != len(row.counts):
                            raise ValueError(f"{name}{row.labels}: bucket counts do not line up")
                        # map(add): half the time of a zip comprehension, on every scrape.
                        have.counts = list(map(add, have.counts, row.counts))
                        have.sum += row.sum
                elif have is None:
                    series[row.labels] = Sample(row.labels, row.value)
                else:
                    assert isinstance(have, Sample), name
                    have.value += row.value
    return {name: list(series.values()) for name, series in totals.items()}


def values(snapshot: Snapshot, name: str) -> list[Sample]:
    """The series of counter or gauge `name`."""
    return [row for row in snapshot.get(name, ()) if isinstance(row, Sample)]


def histograms(snapshot: Snapshot, name: str) -> list[HistogramSample]:
    """The series of histogram `name`."""
    return [row for row in snapshot.get(name, ()) if isinstance(row, HistogramSample)]


def _wire_row(row: Row) -> tuple[Any, ...]:
    if isinstance(row, Sample):
        return row.labels, row.value
    return row.labels, row.counts, row.sum


def to_wire(snapshot: Snapshot) -> bytes:
    """A snapshot as the control channel carries it: each row a JSON array, values by position.

    Positional arrays rather than orjson's objects for dataclasses: a third fewer bytes, and a
    third of the time to encode (a scrape encodes three snapshots)."""
    return orjson.dumps(snapshot, default=_wire_row, option=orjson.OPT_PASSTHROUGH_DATACLASS)


def from_wire(data: bytes) -> Snapshot:
    """The snapshot that to_wire wrote. Rows are told apart by their length, not the catalogue, so
    a worker started from a newer install (one more metric) is still read."""
    return {
        name: [
            Sample(tuple(row[0]), row[1])
            if len(row) == 2
            else HistogramSample(tuple(row[0]), row[1], row[2])
            for row in rows
        ]
        for name, rows in orjson.loads(data).items()
    }


def without_gauges(snapshot: Snapshot) -> Snapshot:
    """What a dead worker leaves behind: its counters and histograms, not its gauges."""
    return {
        name: rows
        for name, rows in snapshot.items()
        if name not in SPECS or SPECS[name].kind != GAUGE  # unknown: a newer worker's counter
    }


class WorkerMetrics:
    """One worker's cells, each bound to its labels once at start-up."""

    def __init__(self, worker: int, capacity: int) -> None:
        self.registry = Registry()
        w = str(worker)
        family = self.registry.__getitem__
        self.active: Cell = family("wsmon_connections_active").child(w)
        family("wsmon_pool_capacity").child(w).value = capacity
        self.opened: Cell = family("wsmon_connections_opened_total").child(w)
        rejected = family("wsmon_connections_rejected_total")
        # A worker refuses for these reasons; the supervisor counts "no_worker".
        self.rejected: dict[str, Cell] = {r: rejected.child(r) for r in ("capacity", "draining")}
        # The supervisor's gate counts rate_limited, handshake_timeout and address_limit.
        refused = family("wsmon_handshakes_refused_total")
        self.refused: dict[str, Cell] = {
            r: refused.child(r) for r in ("origin", "unauthenticated", USER_LIMIT)
        }
        closed = family("wsmon_connections_closed_total")
        self.closed: dict[str, Cell] = {c: closed.child(c) for c in (*CLOSE_CODES, OTHER)}
        received = family("wsmon_messages_received_total")
        self.received: dict[str, Cell] = {t: received.child(t) for t in protocol.RECEIVED_TYPES}
        sent = family("wsmon_messages_sent_total")
        self.sent: dict[str, Cell] = {t: sent.child(t) for t in protocol.SENT_TYPES}
        self._client_errors = family("wsmon_client_errors_total")
        # Bound (and so exported as 0) from the start: a failure is a server bug, and its absence
        # is worth showing on every instance. Only known types reach a handler that can raise.
        failures = family("wsmon_message_failures_total")
        self.failures: dict[str, Cell] = {
            t: failures.child(t, protocol.INTERNAL_ERROR) for t in protocol.CLIENT_TYPES
        }
        latency = family("wsmon_message_latency_seconds")
        self.latency: dict[str, Histogram] = {t: latency.child(t) for t in protocol.RECEIVED_TYPES}
        self.delivery_latency: Histogram = family("wsmon_delivery_latency_seconds").child()
        duration = family("wsmon_broadcast_duration_seconds")
        self.fanout_duration: dict[str, Histogram] = {t: duration.child(t) for t in FANOUT_TYPES}
        recipients = family("wsmon_broadcast_recipients")
        self.fanout_recipients: dict[str, Histogram] = {
            t: recipients.child(t) for t in FANOUT_TYPES
        }
        message_bytes = family("wsmon_message_bytes_total")
        self.bytes_in: Cell = message_bytes.child("in")
        self.bytes_out: Cell = message_bytes.child("out")
        dropped = family("wsmon_deliveries_dropped_total")
        self.dropped: dict[str, Cell] = {r: dropped.child(r) for r in DROP_REASONS}
        self.slow_consumers_cut: Cell = family("wsmon_slow_consumers_disconnected_total").child()
        self.timed_out: Cell = family("wsmon_connections_timed_out_total").child()
        pause = family("wsmon_gc_pause_seconds")
        self.gc_pause: dict[str, Histogram] = {str(g): pause.child(str(g)) for g in range(3)}

    def client_error(self, message_type: str, code: str) -> None:
        """Count a message refused for the client's fault. Off the hot path, so the child is
        looked up here."""
        cell: Cell = self._client_errors.child(message_type, code)
        cell.value += 1

    def close_code(self, code: int | None) -> Cell:
        # No close frame at all is reported as 1006, as RFC 6455 defines it.
        return self.closed.get(str(code if code is not None else 1006), self.closed[OTHER])
