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
from dataclasses import dataclass
from typing import Any, Final

from . import protocol

COUNTER: Final = "counter"
GAUGE: Final = "gauge"
HISTOGRAM: Final = "histogram"

# Sub-millisecond to 10 s; 0.1 and 0.2 are bucket edges because the default thresholds sit there.
LATENCY_BUCKETS: Final = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.2,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
RECIPIENT_BUCKETS: Final = (
    1,
    2,
    5,
    10,
    25,
    50,
    100,
    250,
    500,
    1000,
    2500,
    5000,
    10000,
    25000,
    50000,
)

# Close codes get their own label value; anything else is "other" so the label stays bounded.
CLOSE_CODES: Final = (
    "1000",
    "1001",
    "1002",
    "1003",
    "1006",
    "1007",
    "1008",
    "1009",
    "1011",
    "1013",
)
OTHER: Final = "other"
DROP_REASONS: Final = ("slow_consumer", "closed")
FANOUT_TYPES: Final = ("chat", "notify", "publish", "broadcast")


@dataclass(frozen=True)
class Spec:
    name: str
    kind: str
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()


CATALOGUE: Final = (
    Spec("wsmon_connections_active", GAUGE, "Open WebSocket connections.", ("worker",)),
    Spec(
        "wsmon_pool_capacity",
        GAUGE,
        "Connections a worker accepts before refusing with 1013.",
        ("worker",),
    ),
    Spec("wsmon_connections_opened_total", COUNTER, "WebSocket connections accepted.", ("worker",)),
    Spec(
        "wsmon_connections_rejected_total",
        COUNTER,
        "Connections refused: capacity (close 1013), draining (close 1001), no_worker.",
        ("reason",),
    ),
    Spec(
        "wsmon_connections_closed_total",
        COUNTER,
        "WebSocket connections closed, by close code.",
        ("code",),
    ),
    Spec(
        "wsmon_messages_received_total",
        COUNTER,
        "Frames received on /ws, by message type (invalid: anything unparseable or unknown).",
        ("type",),
    ),
    Spec(
        "wsmon_messages_sent_total",
        COUNTER,
        "Frames sent on /ws, by message type, one per recipient.",
        ("type",),
    ),
    Spec(
        "wsmon_message_errors_total",
        COUNTER,
        "Messages refused with an error frame, by message type and error code.",
        ("type", "reason"),
    ),
    Spec(
        "wsmon_message_latency_seconds",
        HISTOGRAM,
        "Frame received to handled and every local recipient enqueued.",
        ("type",),
        LATENCY_BUCKETS,
    ),
    Spec(
        "wsmon_delivery_latency_seconds",
        HISTOGRAM,
        "Sender's frame received (on any worker) to written to a recipient's socket.",
        (),
        LATENCY_BUCKETS,
    ),
    Spec(
        "wsmon_broadcast_duration_seconds",
        HISTOGRAM,
        "Time to fan one message out to a worker's local recipients.",
        ("type",),
        LATENCY_BUCKETS,
    ),
    Spec(
        "wsmon_broadcast_recipients",
        HISTOGRAM,
        "Local recipients of one fan-out.",
        ("type",),
        RECIPIENT_BUCKETS,
    ),
    Spec(
        "wsmon_message_bytes_total",
        COUNTER,
        "WebSocket payload bytes on /ws and /ws/echo, by direction.",
        ("direction",),
    ),
    Spec(
        "wsmon_deliveries_dropped_total",
        COUNTER,
        "Deliveries not written: slow_consumer (send buffer full), closed (recipient gone).",
        ("reason",),
    ),
    Spec(
        "wsmon_worker_restarts_total",
        COUNTER,
        "Worker processes the supervisor restarted after they died.",
        ("worker",),
    ),
    Spec("wsmon_workers_alive", GAUGE, "Worker processes running and connected.", ()),
    Spec("wsmon_workers_configured", GAUGE, "Worker processes the pool should have.", ()),
)
SPECS: Final = {spec.name: spec for spec in CATALOGUE}


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
