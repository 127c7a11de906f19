"""What one run measured: counts by kind, an HdrHistogram of reply latencies, a per-second timeline.

The recording methods run once per message on the load generator's only core, so each one is a
few integer and dict operations (about 1 µs for the histogram); summaries are computed at the end,
or once a second for the timeline.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from hdrh.histogram import HdrHistogram  # type: ignore[import-untyped]

from .delivery import Ledger

LOWEST_US = 1
HIGHEST_US = 60_000_000
SIGNIFICANT_DIGITS = 3

# Message failure kinds besides `error:<code>` (an error frame answered the message).
TIMEOUT = "timeout"  # no reply by the end of the grace period
LOST = "lost"  # sent, then the server closed the connection before replying
NOT_SENT = "not_sent"  # scheduled after the server closed the connection


class Latencies:
    """Reply latencies in microseconds, 1 µs to 60 s with 3 significant digits (values within
    0.1 %), in a fixed ~140 KiB of counts. A latency over 60 s is recorded as 60 s.
    """

    def __init__(self) -> None:
        self._histogram = HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)

    def record(self, microseconds: int) -> None:
        self._histogram.record_value(min(max(microseconds, LOWEST_US), HIGHEST_US))

    @property
    def count(self) -> int:
        return int(self._histogram.get_total_count())

    def percentile_ms(self, percentile: float) -> float | None:
        if not self.count:
            return None
        return int(self._histogram.get_value_at_percentile(percentile)) / 1000

    def mean_ms(self) -> float | None:
        return float(self._histogram.get_mean_value()) / 1000 if self.count else None

    def min_ms(self) -> float | None:
        return int(self._histogram.get_min_value()) / 1000 if self.count else None

    def max_ms(self) -> float | None:
        return int(self._histogram.get_max_value()) / 1000 if self.count else None

    def bucket_counts(self, edges_ms: Sequence[float]) -> list[int]:
        """Counts in [edges[i], edges[i+1]); the first bucket also takes everything below it and
        the last everything above it.
        """
        counts = [0] * (len(edges_ms) - 1)
        last = len(counts) - 1
        for item in self._histogram.get_recorded_iterator():
            index = bisect.bisect_right(edges_ms, int(item.value_iterated_to) / 1000) - 1
            counts[min(max(index, 0), last)] += int(item.count_at_value_iterated_to)
        return counts


def nearest_rank(ordered: Sequence[int], percentile: float) -> int:
    """The nearest-rank percentile of an ascending, non-empty sequence."""
    rank = math.ceil(percentile / 100 * len(ordered))
    return ordered[min(max(rank, 1), len(ordered)) - 1]


@dataclass(frozen=True)
class TimelinePoint:
    """One second of the run (or the last, partial one), ending `t` seconds after the start."""

    t: float
    connections: int  # open at the end of the second
    attempted: int  # messages whose scheduled time fell in the second
    replies: int
    failures: int
    p50_ms: float | None
    p99_ms: float | None
    max_ms: float | None


class Recorder:
    """Every count the report needs. Not thread-safe: one event loop owns it."""

    def __init__(self) -> None:
        self.latencies = Latencies()
        self.connections_attempted = 0
        self.connections_open = 0
        self.connection_errors: Counter[str] = Counter()  # never got a welcome, by kind
        self.dropped: Counter[str] = Counter()  # closed by the server after the welcome
        self.workers: Counter[str] = Counter()  # welcomes by worker
        self.sent: Counter[str] = Counter()  # measured messages by type
        self.setup_frames: Counter[str] = Counter()  # join/subscribe/identify, not measured
        self.replies = 0
        self.failures: Counter[str] = Counter()  # measured messages without a reply, by kind
        self.error_frames: Counter[str] = Counter()  # every error frame, by code
        self.deliveries: Counter[str] = Counter()  # frames from other clients, by type
        self.ledger = Ledger()  # who must receive what, and who did (Run sets the instances)
        self.in_flight = 0
        self.timeline: list[TimelinePoint] = []
        self._window: list[int] = []  # latencies (µs) since the last tick
        self._last_attempted = self._last_replies = self._last_failures = 0

    @property
    def connections_succeeded(self) -> int:
        return sum(self.workers.values())

    @property
    def attempted(self) -> int:
        return sum(self.sent.values()) + self.failures[NOT_SENT]

    # -- hot path ---------------------------------------------------------------------------

    def message_sent(self, message_type: str) -> None:
        self.sent[message_type] += 1
        self.in_flight += 1

    def reply(self, seconds: float) -> None:
        microseconds = int(seconds * 1_000_000)
        self.latencies.record(microseconds)
        self._window.append(microseconds)
        self.replies += 1
        self.in_flight -= 1

    def failed(self, kind: str, count: int = 1) -> None:
        """`count` messages that were sent failed (error frame, timeout, lost connection)."""
        self.failures[kind] += count
        self.in_flight -= count

    def not_sent(self, count: int) -> None:
        """`count` scheduled messages could not be sent: they are attempts and failures both."""
        self.failures[NOT_SENT] += count

    # -- once a second ----------------------------------------------------------------------

    def tick(self, t: float) -> TimelinePoint:
        """Close the current timeline second and return it."""
        window = sorted(self._window)
        self._window = []
        attempted, failures = self.attempted, self.failures.total()
        point = TimelinePoint(
            t=round(t, 3),
            connections=self.connections_open,
            attempted=attempted - self._last_attempted,
            replies=self.replies - self._last_replies,
            failures=failures - self._last_failures,
            p50_ms=nearest_rank(window, 50) / 1000 if window else None,
            p99_ms=nearest_rank(window, 99) / 1000 if window else None,
            max_ms=window[-1] / 1000 if window else None,
        )
        self._last_attempted, self._last_replies, self._last_failures = (
            attempted,
            self.replies,
            failures,
        )
        self.timeline.append(point)
        return point
