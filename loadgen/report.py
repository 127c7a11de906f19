"""The run's report: one document (dataclasses) rendered as a terminal summary, JSON or HTML.

`build` is the only place that turns raw counts into rates, percentiles and verdicts; the
renderers only format what it computed, so the three outputs cannot disagree.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import orjson

from .client import RunPlan, RunTimes
from .cpu import CpuUsage
from .delivery import Ledger, instance_label, verified_types
from .stats import Latencies, Recorder, TimelinePoint
from .thresholds import (
    COUNT_METRICS,
    MILLISECONDS,
    PERCENT,
    Threshold,
    evaluate,
    percentile_of,
)

# Bucket edges of the latency distribution (1-2-5 steps); the last bucket holds everything above.
DISTRIBUTION_EDGES_MS: Final = (
    0.0,
    0.1,
    0.2,
    0.5,
    1.0,
    2.0,
    5.0,
    10.0,
    20.0,
    50.0,
    100.0,
    200.0,
    500.0,
    1000.0,
    2000.0,
    5000.0,
    10000.0,
)


@dataclass(frozen=True)
class ConnectionSummary:
    attempted: int
    succeeded: int
    failed: int
    success_pct: float | None
    errors: dict[str, int]  # attempts that never got a welcome, by kind
    dropped: dict[str, int]  # connections the server closed during the run, by kind


@dataclass(frozen=True)
class MessageSummary:
    attempted: int
    succeeded: int
    failed: int
    success_pct: float | None
    sent_by_type: dict[str, int]  # measured messages actually sent
    failures: dict[str, int]  # by kind: timeout, lost, not_sent, error:<code>
    error_frames: dict[str, int]  # every error frame received, by code
    setup_frames: dict[str, int]  # join / subscribe / identify sent at connection start
    deliveries: dict[str, int]  # frames other clients' messages produced, by type


@dataclass(frozen=True)
class DeliveryPair:
    """Deliveries of messages sent through one URL to connections on another (or the same)."""

    sender: str  # the instance the message was sent through: the index of its --url
    recipient: str  # the instance the recipient is connected to
    expected: int
    received: int
    missing: int
    duplicates: int
    success_pct: float | None


@dataclass(frozen=True)
class DeliverySummary:
    """The verification of chat, publish, notify and broadcast deliveries (delivery.py)."""

    verified_types: list[str]  # the mix's types whose deliveries are verified
    expected: int  # deliveries owed to the generator's own connections
    received: int  # of those, received in time (before the connections closed)
    missing: int  # expected - received: late or never
    duplicates: int  # a message received again by the same connection (or out of order)
    unexpected: int  # reached a connection that is not one of its recipients
    unverified: int  # not the generator's, or sent before its recipient was ready
    success_pct: float | None  # received / expected
    pairs: list[DeliveryPair]  # sender instance -> recipient instance, with several URLs


@dataclass(frozen=True)
class LatencySummary:
    count: int
    avg_ms: float | None
    min_ms: float | None
    p50_ms: float | None
    p90_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    p999_ms: float | None
    max_ms: float | None
    # (lower edge in ms, count) per bucket of DISTRIBUTION_EDGES_MS
    distribution: list[tuple[float, int]]


@dataclass(frozen=True)
class RateSummary:
    planned_per_s: float  # connections / interval, once all are open
    offered_per_s: float  # messages attempted / sending window
    achieved_per_s: float  # replies / sending window
    window_s: float


@dataclass(frozen=True)
class WorkerSummary:
    connections: dict[str, int]  # from the welcome frames, keyed `wN` (or `URL#/wN`)
    spread: float | None  # busiest / idlest worker that got any connection


@dataclass(frozen=True)
class CpuSummary:
    user_s: float
    system_s: float
    wall_s: float
    cpu_s: float
    percent_of_core: float
    messages_per_cpu_second: float | None
    rss_start_bytes: int
    rss_peak_bytes: int
    # Peak above start, over the connections that opened: what one costs the load generator.
    rss_per_connection_bytes: float | None


@dataclass(frozen=True)
class ThresholdResult:
    threshold: str
    metric: str
    op: str
    unit: str
    limit: float
    observed: float | None
    passed: bool


@dataclass(frozen=True)
class Report:
    profile: str
    started_at: str
    urls: list[str]
    connections: int
    interval_s: float
    duration_s: float
    ramp_up_s: float
    grace_s: float
    mix: str
    seed: int
    probes: int  # handshakes made before the run to check the target answers (not counted)
    connection: ConnectionSummary
    messages: MessageSummary
    delivery: DeliverySummary
    latency: LatencySummary
    rate: RateSummary
    workers: WorkerSummary
    cpu: CpuSummary
    thresholds: list[ThresholdResult]
    passed: bool
    timeline: list[TimelinePoint]

    def to_json(self) -> bytes:
        return orjson.dumps(dataclasses.asdict(self), option=orjson.OPT_INDENT_2)


def _percent(part: int, whole: int) -> float | None:
    return 100 * part / whole if whole else None


def _sorted(counter: Counter[str]) -> dict[str, int]:
    """Non-zero counts, largest first: the order a reader scans errors in."""
    return {key: n for key, n in counter.most_common() if n}


def _delivery_summary(ledger: Ledger, types: list[str]) -> DeliverySummary:
    pairs = [
        DeliveryPair(
            sender=instance_label(a),
            recipient=instance_label(b),
            expected=expected,
            received=received,
            missing=expected - received,
            duplicates=duplicates,
            success_pct=_percent(received, expected),
        )
        for a, b, expected, received, duplicates in ledger.pairs()
    ]
    return DeliverySummary(
        verified_types=types,
        expected=ledger.expected_total,
        received=ledger.received_total,
        missing=ledger.outstanding,
        duplicates=ledger.duplicates_total,
        unexpected=ledger.unexpected,
        unverified=ledger.unverified,
        success_pct=_percent(ledger.received_total, ledger.expected_total),
        pairs=pairs if ledger.instances > 1 else [],
    )


def _latency_summary(latencies: Latencies) -> LatencySummary:
    counts = latencies.bucket_counts((*DISTRIBUTION_EDGES_MS, float("inf")))
    return LatencySummary(
        count=latencies.count,
        avg_ms=latencies.mean_ms(),
        min_ms=latencies.min_ms(),
        p50_ms=latencies.percentile_ms(50),
        p90_ms=latencies.percentile_ms(90),
        p95_ms=latencies.percentile_ms(95),
        p99_ms=latencies.percentile_ms(99),
        p999_ms=latencies.percentile_ms(99.9),
        max_ms=latencies.max_ms(),
        distribution=list(zip(DISTRIBUTION_EDGES_MS, counts, strict=True)),
    )


def build(
    plan: RunPlan,
    recorder: Recorder,
    times: RunTimes,
    cpu: CpuUsage,
    thresholds: Sequence[Threshold],
    *,
    started_at: str,
) -> Report:
    """Everything the renderers show, computed once."""
    profile = plan.profile
    succeeded = recorder.connections_succeeded
    connection = ConnectionSummary(
        attempted=recorder.connections_attempted,
        succeeded=succeeded,
        failed=recorder.connections_attempted - succeeded,
        success_pct=_percent(succeeded, recorder.connections_attempted),
        errors=_sorted(recorder.connection_errors),
        dropped=_sorted(recorder.dropped),
    )
    attempted = recorder.attempted
    messages = MessageSummary(
        attempted=attempted,
        succeeded=recorder.replies,
        failed=attempted - recorder.replies,
        success_pct=_percent(recorder.replies, attempted),
        sent_by_type=dict(sorted(recorder.sent.items())),
        failures=_sorted(recorder.failures),
        error_frames=_sorted(recorder.error_frames),
        setup_frames=dict(sorted(recorder.setup_frames.items())),
        deliveries=dict(sorted(recorder.deliveries.items())),
    )
    delivery = _delivery_summary(
        recorder.ledger, verified_types(plan.mix.types, token=plan.token is not None)
    )
    window = times.sending_ended
    rate = RateSummary(
        planned_per_s=profile.planned_rate,
        offered_per_s=attempted / window,
        achieved_per_s=recorder.replies / window,
        window_s=window,
    )
    per_worker = dict(sorted(recorder.workers.items()))
    workers = WorkerSummary(
        connections=per_worker,
        spread=max(per_worker.values()) / min(per_worker.values()) if per_worker else None,
    )
    latencies = recorder.latencies

    def observe(metric: str) -> float | None:
        fixed: dict[str, float | None] = {
            "connection_success": connection.success_pct,
            "message_success": messages.success_pct,
            "delivery_success": delivery.success_pct,
            # Nothing to count when no delivery is verified: such a rule fails, as any does.
            "delivery_duplicates": delivery.duplicates if delivery.verified_types else None,
            "worker_spread": workers.spread,
        }
        if metric in fixed:
            return fixed[metric]
        percentile = percentile_of(metric)
        if percentile is not None:
            return latencies.percentile_ms(percentile)
        return {"avg": latencies.mean_ms, "min": latencies.min_ms, "max": latencies.max_ms}[
            metric
        ]()

    verdicts = evaluate(thresholds, observe)
    results = [
        ThresholdResult(
            threshold=str(v.threshold),
            metric=v.threshold.metric,
            op=v.threshold.op,
            unit=v.threshold.unit,
            limit=v.threshold.limit,
            observed=v.observed,
            passed=v.passed,
        )
        for v in verdicts
    ]
    return Report(
        profile=profile.name,
        started_at=started_at,
        urls=list(plan.urls),
        connections=profile.connections,
        interval_s=profile.interval,
        duration_s=profile.duration,
        ramp_up_s=profile.ramp_up,
        grace_s=plan.grace,
        mix=str(plan.mix),
        seed=plan.seed,
        probes=len(plan.urls),
        connection=connection,
        messages=messages,
        delivery=delivery,
        latency=_latency_summary(latencies),
        rate=rate,
        workers=workers,
        cpu=CpuSummary(
            user_s=cpu.user_seconds,
            system_s=cpu.system_seconds,
            wall_s=cpu.wall_seconds,
            cpu_s=cpu.cpu_seconds,
            percent_of_core=cpu.percent_of_core,
            messages_per_cpu_second=attempted / cpu.cpu_seconds if cpu.cpu_seconds else None,
            rss_start_bytes=cpu.rss_start_bytes,
            rss_peak_bytes=cpu.rss_peak_bytes,
            rss_per_connection_bytes=(cpu.rss_peak_bytes - cpu.rss_start_bytes)
            / connection.succeeded
            if connection.succeeded
            else None,
        ),
        thresholds=results,
        passed=all(v.passed for v in verdicts),
        timeline=list(recorder.timeline),
    )


# -- formatting shared by the terminal and HTML renderers -----------------------------------


def format_memory(cpu: CpuSummary) -> str:
    mib = 1024 * 1024
    text = (
        f"peak {cpu.rss_peak_bytes / mib:,.1f} MiB ({cpu.rss_start_bytes / mib:,.1f} at the start)"
    )
    if cpu.rss_per_connection_bytes is not None:
        text += f", {cpu.rss_per_connection_bytes / 1024:,.1f} KiB per connection"
    return text


def format_ms(value: float | None) -> str:
    if value is None:
        return "n/a"
    if value < 10:
        return f"{value:.2f} ms"
    if value < 1000:
        return f"{value:.1f} ms"
    return f"{value / 1000:.2f} s"


def format_pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} %"


def format_observed(result: ThresholdResult) -> str:
    if result.unit == MILLISECONDS:
        return format_ms(result.observed)
    if result.unit == PERCENT:
        return format_pct(result.observed)
    if result.observed is None:
        return "n/a"
    return f"{result.observed:,.0f}" if result.metric in COUNT_METRICS else f"{result.observed:.2f}"


def format_delivery(d: DeliverySummary) -> str:
    """`12,345 of 12,345 expected arrived   100.00 %   duplicates 0` (and what else to know)."""
    if not d.verified_types:
        return "not verified (no chat, publish, notify or broadcast in the mix)"
    line = (
        f"{d.received:,} of {d.expected:,} expected arrived   {format_pct(d.success_pct)}"
        f"   missing {d.missing:,}   duplicates {d.duplicates:,}"
    )
    if d.unexpected:
        line += f"   to a connection not a recipient {d.unexpected:,}"
    return line


def format_pair(pair: DeliveryPair) -> str:
    """`0→1 99.80 % (3 missing, 1 duplicate)`."""
    notes = []
    if pair.missing:
        notes.append(f"{pair.missing:,} missing")
    if pair.duplicates:
        notes.append(f"{pair.duplicates:,} duplicate{'s' if pair.duplicates > 1 else ''}")
    note = f" ({', '.join(notes)})" if notes else ""
    return f"{pair.sender}→{pair.recipient} {format_pct(pair.success_pct)}{note}"


def targets(urls: Sequence[str]) -> str:
    """The URLs, each after its instance's name in the delivery breakdown when there are several."""
    if len(urls) == 1:
        return urls[0]
    return ", ".join(f"{instance_label(i)} {url}" for i, url in enumerate(urls))


def format_counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{key} {n:,}" for key, n in counts.items()) or "none"


def error_kinds(report: Report) -> dict[str, int]:
    """Every kind of error in one mapping, each kind named once (`connect_refused`,
    `dropped:closed_1001`, `timeout`, `error:rate_limited`, ...).
    """
    kinds: dict[str, int] = dict(report.connection.errors)
    kinds.update({f"dropped:{kind}": n for kind, n in report.connection.dropped.items()})
    kinds.update(report.messages.failures)
    # Error frames that answered no measured message (a refused setup frame, say).
    for code, n in report.messages.error_frames.items():
        unmatched = n - report.messages.failures.get(f"error:{code}", 0)
        if unmatched:
            kinds[f"error_frame:{code}"] = unmatched
    return kinds


def render_text(report: Report) -> str:
    """The terminal summary: a few aligned lines, then one verdict line per threshold."""
    c, m, lat, r, w, cpu = (
        report.connection,
        report.messages,
        report.latency,
        report.rate,
        report.workers,
        report.cpu,
    )
    lines = [
        f"wsmon loadtest {report.profile}: {report.connections:,} connections, one message every"
        f" {report.interval_s:g} s each, {report.duration_s:g} s after a {report.ramp_up_s:g} s"
        f" ramp-up",
        f"  target       {targets(report.urls)}",
        f"  mix          {report.mix}  (seed {report.seed})",
        f"  connections  {c.succeeded:,} of {c.attempted:,} succeeded"
        f"   {format_pct(c.success_pct)}",
        f"  messages     {m.succeeded:,} of {m.attempted:,} answered   {format_pct(m.success_pct)}",
        f"  latency      avg {format_ms(lat.avg_ms)}   p50 {format_ms(lat.p50_ms)}"
        f"   p90 {format_ms(lat.p90_ms)}   p99 {format_ms(lat.p99_ms)}"
        f"   max {format_ms(lat.max_ms)}",
        f"  rate         offered {r.offered_per_s:,.1f} msg/s   achieved {r.achieved_per_s:,.1f}"
        f" msg/s   (planned {r.planned_per_s:,.1f} msg/s with all connections open)",
        f"  deliveries   {format_counts(m.deliveries)}",
        f"  verified     {format_delivery(report.delivery)}",
        *(
            ["  by instance  " + "   ".join(format_pair(p) for p in report.delivery.pairs)]
            if report.delivery.pairs
            else []
        ),
        "  workers      "
        + (
            " · ".join(f"{key} {n:,}" for key, n in w.connections.items())
            + f"   spread max/min {w.spread:.2f}"
            if w.spread is not None
            else "no connection was welcomed"
        ),
        f"  errors       {format_counts(error_kinds(report))}",
        f"  loadgen CPU  {cpu.cpu_s:.2f} s over {cpu.wall_s:.1f} s ="
        f" {cpu.percent_of_core:.1f} % of one core"
        + (
            f", {cpu.messages_per_cpu_second:,.0f} messages per CPU-second"
            if cpu.messages_per_cpu_second is not None
            else ""
        ),
        f"  loadgen RSS  {format_memory(cpu)}",
        "thresholds",
    ]
    width = max((len(t.threshold) for t in report.thresholds), default=0)
    for t in report.thresholds:
        verdict = "PASS" if t.passed else "FAIL"
        lines.append(f"  {verdict}  {t.threshold:<{width}}  observed {format_observed(t)}")
    lines.append(
        "result: PASSED, every threshold holds"
        if report.passed
        else "result: FAILED, "
        + ", ".join(t.threshold for t in report.thresholds if not t.passed)
        + " did not hold"
    )
    return "\n".join(lines)


def write_json(report: Report, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(report.to_json() + b"\n")


def progress_line(point: TimelinePoint, recorder: Recorder, target: int, cpu_pct: float) -> str:
    """The live line: connections open, answered msg/s in the last second, p99 so far, CPU."""
    p99 = recorder.latencies.percentile_ms(99)
    failed = recorder.failures.total() + recorder.connection_errors.total()
    return (
        f"[{point.t:6.1f} s] connections {point.connections:,}/{target:,}"
        f" · {point.replies:,} msg/s · p99 so far {format_ms(p99)}"
        f" · failures {failed:,} · loadgen CPU {cpu_pct:.0f} %"
    )
