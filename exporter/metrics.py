"""Every wsmon metric, defined once, and the design that keeps them cheap.

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
from typing import Any

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


# A snapshot: metric name -> list of [label values, value] or [label values, bucket counts, sum].
Snapshot = dict[str, list[list[Any]]]


class Registry:
    """The metric families one process owns, and their snapshot for the supervisor."""

    def __init__(self) -> None:
        self.families = {spec.name: Family(spec) for spec in CATALOGUE}

    def __getitem__(self, name: str) -> Family:
        return self.families[name]

    def snapshot(self) -> Snapshot:
        out: Snapshot = {}
        for name, family in self.families.items():
            rows: list[list[Any]] = []
            for labels, child in family.children.items():
                if isinstance(child, Histogram):
                    rows.append([list(labels), list(child.counts), child.sum])
                else:
                    rows.append([list(labels), child.value])
            if rows:
                out[name] = rows
        return out


def merge(snapshots: Iterable[Snapshot]) -> Snapshot:
    """Sum snapshots series by series (gauges carry a worker label, so they never collide)."""
    totals: dict[str, dict[LabelValues, list[Any]]] = {}
    for snapshot in snapshots:
        for name, rows in snapshot.items():
            series = totals.setdefault(name, {})
            for row in rows:
                key = tuple(row[0])
                have = series.get(key)
                if have is None:
                    series[key] = [
                        list(row[0]),
                        *(list(v) if isinstance(v, list) else v for v in row[1:]),
                    ]
                elif len(row) == 3:
                    have[1] = [a + b for a, b in zip(have[1], row[1], strict=True)]
                    have[2] += row[2]
                else:
                    have[1] += row[1]
    return {name: list(series.values()) for name, series in totals.items()}


def without_gauges(snapshot: Snapshot) -> Snapshot:
    """What a dead worker leaves behind: its counters and histograms, not its gauges."""
    return {name: rows for name, rows in snapshot.items() if SPECS[name].kind != GAUGE}


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
        closed = family("wsmon_connections_closed_total")
        self.closed: dict[str, Cell] = {c: closed.child(c) for c in (*CLOSE_CODES, OTHER)}
        received = family("wsmon_messages_received_total")
        self.received: dict[str, Cell] = {t: received.child(t) for t in protocol.RECEIVED_TYPES}
        sent = family("wsmon_messages_sent_total")
        self.sent: dict[str, Cell] = {t: sent.child(t) for t in protocol.SENT_TYPES}
        self._errors = family("wsmon_message_errors_total")
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

    def error(self, message_type: str, code: str) -> None:
        """Count a refused message. Off the hot path, so the child is looked up here."""
        cell: Cell = self._errors.child(message_type, code)
        cell.value += 1

    def close_code(self, code: int | None) -> Cell:
        # No close frame at all is reported as 1006, as RFC 6455 defines it.
        return self.closed.get(str(code if code is not None else 1006), self.closed[OTHER])
