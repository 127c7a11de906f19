"""The soak's verdict, as plain functions of its samples, its last /metrics scrape and the clients'
counts (soak_clients.Counts.document()); nothing here opens a socket or reads /proc.

Every check keeps its measured figures unrounded in `measured`; the text shows them in full.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from prometheus_client.parser import text_string_to_metric_families

from ...catalogue import CLIENT_TYPES, CLOSE_CODES, INVALID, OTHER

GROWTH_LIMIT_PERCENT: Final = 5.0
MEDIAN_OF: Final = 3  # samples whose median is the RSS at warm-up end, and at the end
# Each bad-input kind, the client_errors reason the server counts it under (type "invalid").
BAD_REASON: Final = {
    "malformed_json": "invalid_json",
    "unknown_type": "unknown_type",
    "binary": "binary_frame",
    "oversized": "too_large",
    "invalid_utf8": "invalid_frame",
}
# The close code each closing kind ends with; the others close normally (1000).
BAD_CLOSE_CODE: Final = {"oversized": "1009", "invalid_utf8": "1007"}
# The reply each message type earns (exporter/handlers.py REPLY_TYPES; the rest get an ack).
REPLY_TYPE: Final = {"echo": "echo", "ping": "pong"}

Labels = frozenset[tuple[str, str]]


@dataclass(frozen=True)
class Scrape:
    """One parsed /metrics answer: sample name + label set -> value."""

    samples: dict[tuple[str, Labels], float]

    @classmethod
    def parse(cls, text: str) -> Scrape:
        samples: dict[tuple[str, Labels], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
        return cls(samples)

    def total(self, name: str, **labels: str) -> float:
        """Sum of every sample of `name` whose labels include `labels` (0 when there is none)."""
        wanted = set(labels.items())
        return sum(v for (n, ls), v in self.samples.items() if n == name and wanted <= ls)

    def series(self, name: str) -> dict[Labels, float]:
        return {ls: v for (n, ls), v in self.samples.items() if n == name}


@dataclass(frozen=True)
class Sample:
    """The server tree at one moment. `t`: seconds since the load began (negative before)."""

    t: float
    phase: str  # idle (before the load), load, after (the clients have gone)
    rss: int  # bytes, every process of the tree
    fds: int  # open descriptors, every process of the tree
    active: float  # sum of wsmon_connections_active
    rss_by_process: dict[str, int] = field(default_factory=dict)
    fds_by_process: dict[str, int] = field(default_factory=dict)


@dataclass
class Check:
    name: str
    passed: bool
    measured: str  # every figure compared, in full
    limit: str  # what passing means
    figures: dict[str, Any] = field(default_factory=dict)


def _median(values: Sequence[int]) -> float:
    return float(statistics.median(values))


def rss_growth(
    samples: Sequence[Sample],
    warmup_seconds: float,
    limit_percent: float = GROWTH_LIMIT_PERCENT,
    median_of: int = MEDIAN_OF,
) -> Check:
    """The median RSS of the `median_of` load samples nearest the end of warm-up against the median
    of the last `median_of` load samples; passes when the growth is under `limit_percent`."""
    load = [s for s in samples if s.phase == "load"]
    name = "RSS growth after warm-up"
    limit = f"< {limit_percent:g} %"
    after = [s for s in load if s.t >= warmup_seconds]
    if len(load) < 2 * median_of or len(after) < median_of:
        return Check(
            name,
            False,
            f"too few samples: {len(load)} during the load, {len(after)} after warm-up"
            f" (need {2 * median_of} and {median_of})",
            limit,
        )
    nearest = sorted(load, key=lambda s: (abs(s.t - warmup_seconds), s.t))[:median_of]
    nearest.sort(key=lambda s: s.t)
    last = load[-median_of:]
    warm, end = _median([s.rss for s in nearest]), _median([s.rss for s in last])
    growth = (end - warm) / warm * 100
    peak = max(s.rss for s in after)
    # Shown, not judged: the least-squares slope after warm-up, which a longer run would extend.
    trend = statistics.linear_regression([s.t for s in after], [s.rss for s in after]).slope * 60
    return Check(
        name,
        growth < limit_percent,
        f"{growth:.3f} % (median at warm-up end {warm:,.0f} B from t="
        f"{', '.join(f'{s.t:.1f}' for s in nearest)} s; median at the end {end:,.0f} B from t="
        f"{', '.join(f'{s.t:.1f}' for s in last)} s; peak after warm-up {peak:,} B;"
        f" least-squares trend after warm-up {trend:+,.0f} B/min)",
        limit,
        {
            "growth_percent": growth,
            "warm_bytes": warm,
            "end_bytes": end,
            "peak_bytes": peak,
            "trend_bytes_per_minute": trend,
        },
    )


def descriptors(idle: Sample, final: Sample, slack: int) -> list[Check]:
    """After the clients have gone: descriptors back to idle (+ slack), no connection active."""
    grew = final.fds - idle.fds
    return [
        Check(
            "descriptors back to idle",
            grew <= slack,
            f"{final.fds} open after the load, {idle.fds} before it: {grew:+d}"
            f" (after: {final.fds_by_process}; before: {idle.fds_by_process})",
            f"≤ idle + {slack}",
            {"idle": idle.fds, "final": final.fds, "grew": grew},
        ),
        Check(
            "wsmon_connections_active back to 0",
            final.active == 0,
            f"{final.active:g}",
            "= 0",
            {"active": final.active},
        ),
    ]


def _compare(name: str, pairs: Mapping[str, tuple[float, float]], explain: str) -> Check:
    """Each pair (server, clients) equal; the text lists every pair, a mismatch first."""
    wrong = {key: pair for key, pair in pairs.items() if pair[0] != pair[1]}
    shown = sorted(pairs.items(), key=lambda item: (item[0] not in wrong, item[0]))
    text = "; ".join(
        f"{key} {server:g} {'≠' if key in wrong else '='} {clients:g}"
        for key, (server, clients) in shown
    )
    return Check(name, not wrong, text or "nothing to compare", explain, {"pairs": dict(pairs)})


def _count(document: Mapping[str, Mapping[str, int]], kind: str, key: str | None = None) -> int:
    values = document.get(kind, {})
    return int(values.get(key, 0)) if key is not None else int(sum(values.values()))


def balance(scrape: Scrape, counts: Mapping[str, Mapping[str, int]]) -> list[Check]:
    """The server's counters, once idle, against what the clients did."""
    checks: list[Check] = []
    opened = scrape.total("wsmon_connections_opened_total")
    closed = scrape.total("wsmon_connections_closed_total")
    bad_sent = counts.get("bad_sent", {})
    checks.append(
        _compare(
            "connections: opened = closed, and = the clients' opened",
            {
                "wsmon_connections_opened_total = wsmon_connections_closed_total (all codes)": (
                    opened,
                    closed,
                ),
                "wsmon_connections_opened_total = clients' welcomes (steady + churn + bad)": (
                    opened,
                    _count(counts, "opened"),
                ),
            },
            "equal",
        )
    )
    # Every connection the clients opened ends with their normal close, but for those a closing
    # bad frame ended: the server closes those with its own code.
    closing_bad = sum(bad_sent.get(kind, 0) for kind in BAD_CLOSE_CODE)
    expected_close = {"1000": float(_count(counts, "opened") - closing_bad)}
    for kind, code in BAD_CLOSE_CODE.items():
        expected_close[code] = float(bad_sent.get(kind, 0))
    checks.append(
        _compare(
            "closes by code",
            {
                f'wsmon_connections_closed_total{{code="{code}"}}': (
                    scrape.total("wsmon_connections_closed_total", code=code),
                    expected_close.get(code, 0.0),
                )
                for code in (*CLOSE_CODES, OTHER)
            },
            "1000 = the clients' normal closes; 1009 = oversized sent; 1007 = invalid UTF-8"
            " sent; every other code 0",
        )
    )
    sent = counts.get("sent", {})
    received = {
        f'wsmon_messages_received_total{{type="{t}"}}': (
            scrape.total("wsmon_messages_received_total", type=t),
            float(sent.get(t, 0)),
        )
        for t in CLIENT_TYPES
    }
    received[f'wsmon_messages_received_total{{type="{INVALID}"}}'] = (
        scrape.total("wsmon_messages_received_total", type=INVALID),
        float(sum(bad_sent.values())),
    )
    checks.append(
        _compare(
            "messages received by type",
            received,
            "each type = the clients' valid messages of it; invalid = every bad frame sent",
        )
    )
    errors = {
        f'wsmon_client_errors_total{{type="invalid",reason="{reason}"}}': (
            scrape.total("wsmon_client_errors_total", type=INVALID, reason=reason),
            float(bad_sent.get(kind, 0)),
        )
        for kind, reason in BAD_REASON.items()
    }
    explained = sum(value for value, _ in errors.values())
    errors["wsmon_client_errors_total, every other series"] = (
        scrape.total("wsmon_client_errors_total") - explained,
        0.0,
    )
    checks.append(
        _compare(
            "client errors by kind",
            errors,
            "each reason = the bad frames of its kind sent (malformed JSON, unknown type, binary,"
            " oversized, invalid UTF-8); nothing else",
        )
    )
    asked = counts.get("expected_replies", {})
    acked = float(sum(n for t, n in asked.items() if t not in REPLY_TYPE))
    replies = {
        'wsmon_messages_sent_total{type="welcome"}': (
            scrape.total("wsmon_messages_sent_total", type="welcome"),
            float(_count(counts, "opened")),
        ),
        'wsmon_messages_sent_total{type="echo"}': (
            scrape.total("wsmon_messages_sent_total", type="echo"),
            float(asked.get("echo", 0)),
        ),
        'wsmon_messages_sent_total{type="pong"}': (
            scrape.total("wsmon_messages_sent_total", type="pong"),
            float(asked.get("ping", 0)),
        ),
        'wsmon_messages_sent_total{type="ack"}': (
            scrape.total("wsmon_messages_sent_total", type="ack"),
            acked,
        ),
        'wsmon_messages_sent_total{type="error"}': (
            scrape.total("wsmon_messages_sent_total", type="error"),
            float(sum(n for kind, n in bad_sent.items() if kind not in BAD_CLOSE_CODE)),
        ),
    }
    checks.append(
        _compare(
            "replies sent by type",
            replies,
            "welcome = connections opened; echo, pong, ack = messages sent with an id;"
            " error = bad frames answered with one",
        )
    )
    client_side = {
        f"replies to {t}": (float(counts.get("replies", {}).get(t, 0)), float(n))
        for t, n in sorted(asked.items())
    }
    client_side |= {
        f"bad {kind} answered as expected": (
            float(counts.get("bad_answered", {}).get(kind, 0)),
            float(n),
        )
        for kind, n in sorted(bad_sent.items())
    }
    client_side |= {
        f"failure {key}": (float(n), 0.0) for key, n in sorted(counts.get("failures", {}).items())
    }
    client_side |= {
        f"skipped {key}": (float(n), 0.0) for key, n in sorted(counts.get("skipped", {}).items())
    }
    checks.append(
        _compare(
            "clients: every reply came back, nothing failed",
            client_side,
            "replies = messages sent with an id; no failure, nothing skipped",
        )
    )
    checks.append(
        _compare(
            "no restarts, failures or refusals",
            {
                name: (scrape.total(name), 0.0)
                for name in (
                    "wsmon_worker_restarts_total",
                    "wsmon_message_failures_total",
                    "wsmon_connections_rejected_total",
                    "wsmon_handshakes_refused_total",
                    "wsmon_slow_consumers_disconnected_total",
                )
            }
            | {
                "wsmon_workers_alive = wsmon_workers_configured": (
                    scrape.total("wsmon_workers_alive"),
                    scrape.total("wsmon_workers_configured"),
                )
            },
            "each 0; every configured worker alive",
        )
    )
    return checks


def verdict(
    samples: Sequence[Sample],
    idle: Sample,
    final: Sample,
    scrape: Scrape,
    counts: Mapping[str, Mapping[str, int]],
    warmup_seconds: float,
    fd_slack: int,
    limit_percent: float = GROWTH_LIMIT_PERCENT,
) -> list[Check]:
    return [
        rss_growth(samples, warmup_seconds, limit_percent),
        *descriptors(idle, final, fd_slack),
        *balance(scrape, counts),
    ]


def table(checks: Sequence[Check]) -> str:
    lines = ["| check | measured | passes when | verdict |", "|---|---|---|---|"]
    for check in checks:
        verdict = "PASS" if check.passed else "**FAIL**"
        measured = check.measured.replace("|", "\\|")
        lines.append(f"| {check.name} | {measured} | {check.limit} | {verdict} |")
    return "\n".join(lines) + "\n"
