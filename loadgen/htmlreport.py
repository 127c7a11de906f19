"""The HTML report: one self-contained file (inline CSS and SVG, no script, no network).

Charts are drawn here as SVG: latency over time, throughput over time, the latency distribution
and connections per worker. Every chart is an `<svg id="chart-…">`; every plotted value is an
element with `data-*` attributes (`circle.point` on lines, `rect.bar` in bar charts), so a test
can check the rendered page against the JSON report.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path
from typing import Final

from .report import (
    Report,
    error_kinds,
    format_counts,
    format_delivery,
    format_memory,
    format_ms,
    format_observed,
    format_pct,
    targets,
)
from .stats import TimelinePoint
from .thresholds import MILLISECONDS

WIDTH: Final = 760
HEIGHT: Final = 300
LEFT, RIGHT, TOP, BOTTOM = 70, 20, 20, 60
BLUE, RED, GREY, GREEN, AMBER = "#2563eb", "#dc2626", "#9ca3af", "#16a34a", "#d97706"


@dataclass(frozen=True)
class Series:
    name: str
    color: str
    points: Sequence[tuple[float, float | None]]  # None: nothing measured at that x (a gap)
    dashed: bool = False  # drawn dashed and wider, so a line it coincides with stays visible


def _nice_step(span: float, count: int) -> float:
    """A 1, 2 or 5 times a power of ten step giving about `count` ticks over `span`."""
    raw = span / max(count, 1)
    magnitude = 10.0 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)


@dataclass(frozen=True)
class Scale:
    """Maps data values onto [start, stop] pixels, linearly or on a log10 axis."""

    low: float
    high: float
    start: float
    stop: float
    log: bool = False

    def __call__(self, value: float) -> float:
        if self.log:
            value, low, high = (math.log10(max(v, 1e-9)) for v in (value, self.low, self.high))
        else:
            low, high = self.low, self.high
        fraction = (value - low) / (high - low) if high > low else 0.0
        return self.start + fraction * (self.stop - self.start)

    def ticks(self) -> list[float]:
        if self.log:
            decades = range(math.floor(math.log10(self.low)), math.ceil(math.log10(self.high)) + 1)
            # 1-2-5 steps while they fit; over more than three decades they crowd the axis.
            steps = (1, 2, 5) if len(decades) <= 4 else (1,)
            ticks = [m * 10.0**e for e in decades for m in steps]
            return [t for t in ticks if self.low <= t * (1 + 1e-9) and t <= self.high * (1 + 1e-9)]
        step = _nice_step(self.high - self.low, 5)
        first = math.ceil(self.low / step)
        return [i * step for i in range(first, math.floor(self.high / step) + 1)]


def _number(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 or value == int(value) else f"{value:g}"


def _frame(chart_id: str, title: str, body: list[str], x_label: str, y_label: str) -> str:
    return "\n".join(
        [
            f"<figure><figcaption>{escape(title)}</figcaption>",
            f'<svg id="{chart_id}" class="chart" viewBox="0 0 {WIDTH} {HEIGHT}"'
            f' width="{WIDTH}" height="{HEIGHT}" role="img" aria-label="{escape(title)}"'
            ' xmlns="http://www.w3.org/2000/svg">',
            *body,
            f'<text class="axis-label" x="{(LEFT + WIDTH - RIGHT) / 2}" y="{HEIGHT - 8}"'
            f' text-anchor="middle">{escape(x_label)}</text>',
            f'<text class="axis-label" transform="translate(14 {(TOP + HEIGHT - BOTTOM) / 2})'
            f' rotate(-90)" text-anchor="middle">{escape(y_label)}</text>',
            "</svg></figure>",
        ]
    )


def _y_axis(y: Scale, label: Callable[[float], str]) -> list[str]:
    out = []
    for tick in y.ticks():
        py = y(tick)
        out.append(
            f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{py:.1f}" y2="{py:.1f}"/>'
            f'<text class="tick" x="{LEFT - 6}" y="{py + 4:.1f}" text-anchor="end">'
            f"{escape(label(tick))}</text>"
        )
    return out


def line_chart(
    chart_id: str,
    title: str,
    series: Sequence[Series],
    *,
    x_label: str,
    y_label: str,
    log_y: bool = False,
    reference: tuple[float, str] | None = None,
) -> str:
    """Lines over a shared x axis, one `circle.point` per value, an optional dashed reference
    line (a threshold). A log y axis needs positive values; zeros are drawn at its floor.
    """
    xs = [x for s in series for x, _ in s.points]
    ys = [v for s in series for _, v in s.points if v is not None]
    if reference is not None:
        ys.append(reference[0])
    x_high = max(xs, default=1.0)
    x = Scale(0.0, x_high if x_high > 0 else 1.0, LEFT, WIDTH - RIGHT)
    if log_y:
        positive = [v for v in ys if v > 0] or [1.0]
        low = 10 ** math.floor(math.log10(min(positive)))
        high = 10 ** math.ceil(math.log10(max(positive) * 1.01))
        y = Scale(low, max(high, low * 10), HEIGHT - BOTTOM, TOP, log=True)
    else:
        y = Scale(0.0, max(ys, default=0.0) * 1.1 or 1.0, HEIGHT - BOTTOM, TOP)
    body = _y_axis(y, _number)
    for tick in x.ticks():
        body.append(
            f'<text class="tick" x="{x(tick):.1f}" y="{HEIGHT - BOTTOM + 16}"'
            f' text-anchor="middle">{_number(tick)}</text>'
        )
    if reference is not None:
        ry = y(reference[0])
        body.append(
            f'<line class="reference" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{ry:.1f}"'
            f' y2="{ry:.1f}" stroke="{RED}"/>'
            f'<text class="tick" x="{WIDTH - RIGHT - 4}" y="{ry - 4:.1f}" text-anchor="end"'
            f' fill="{RED}">{escape(reference[1])}</text>'
        )
    for s in series:
        segments: list[list[str]] = [[]]
        circles = []
        for px, value in s.points:
            if value is None:
                segments.append([])
                continue
            cx, cy = x(px), y(max(value, y.low))
            segments[-1].append(f"{cx:.1f},{cy:.1f}")
            circles.append(
                f'<circle class="point" data-series="{escape(s.name)}" data-x="{px:g}"'
                f' data-y="{value:g}" cx="{cx:.1f}" cy="{cy:.1f}" r="2" fill="{s.color}"/>'
            )
        body += [
            f'<polyline class="line{" dashed" if s.dashed else ""}" points="{" ".join(seg)}"'
            f' stroke="{s.color}"/>'
            for seg in segments
            if seg
        ]
        body += circles
    legend_x = LEFT
    for s in series:
        body.append(
            f'<rect x="{legend_x}" y="{HEIGHT - 30}" width="12" height="12" fill="{s.color}"/>'
            f'<text class="legend" x="{legend_x + 16}" y="{HEIGHT - 20}">{escape(s.name)}</text>'
        )
        legend_x += 24 + 8 * len(s.name) + 20
    return _frame(chart_id, title, body, x_label, y_label)


def bar_chart(
    chart_id: str,
    title: str,
    bars: Sequence[tuple[str, float]],
    *,
    x_label: str,
    y_label: str,
    color: str = BLUE,
) -> str:
    """One `rect.bar` per (label, value), value printed above it."""
    top = max((v for _, v in bars), default=1.0) * 1.15 or 1.0
    y = Scale(0.0, top, HEIGHT - BOTTOM, TOP)
    body = _y_axis(y, _number)
    slot = (WIDTH - LEFT - RIGHT) / max(len(bars), 1)
    width = min(slot * 0.7, 80)
    for i, (label, value) in enumerate(bars):
        bx = LEFT + i * slot + (slot - width) / 2
        by = y(value)
        body.append(
            f'<rect class="bar" data-label="{escape(label)}" data-value="{value:g}"'
            f' x="{bx:.1f}" y="{by:.1f}" width="{width:.1f}" height="{HEIGHT - BOTTOM - by:.1f}"'
            f' fill="{color}"/>'
            f'<text class="tick" x="{bx + width / 2:.1f}" y="{by - 4:.1f}"'
            f' text-anchor="middle">{_number(value)}</text>'
            f'<text class="tick" x="{bx + width / 2:.1f}" y="{HEIGHT - BOTTOM + 16}"'
            f' text-anchor="middle">{escape(label)}</text>'
        )
    return _frame(chart_id, title, body, x_label, y_label)


def _latency_budget(report: Report) -> tuple[float, str] | None:
    """The p99 threshold (or another latency bound), drawn as the latency chart's reference."""
    bounds = [t for t in report.thresholds if t.unit == MILLISECONDS and t.op in ("<", "<=")]
    preferred = [t for t in bounds if t.metric == "p99"] or bounds
    return (preferred[0].limit, f"threshold {preferred[0].threshold}") if preferred else None


def _distribution_bars(report: Report) -> list[tuple[str, float]]:
    """Buckets from the first to the last non-empty one, labelled by their lower edge."""
    buckets = report.latency.distribution
    filled = [i for i, (_, n) in enumerate(buckets) if n]
    if not filled:
        return []
    return [
        (f"≥{format_ms(edge)}" if i == len(buckets) - 1 else f"{edge:g}-{buckets[i + 1][0]:g}", n)
        for i, (edge, n) in enumerate(buckets)
        if filled[0] <= i <= filled[-1]
    ]


def charts(report: Report) -> list[str]:
    timeline = report.timeline
    latency = line_chart(
        "chart-latency-time",
        "Latency over time (per second, from the scheduled send time)",
        [
            Series("p50", BLUE, [(p.t, p.p50_ms) for p in timeline]),
            Series("p99", RED, [(p.t, p.p99_ms) for p in timeline]),
            Series("max", GREY, [(p.t, p.max_ms) for p in timeline]),
        ],
        x_label="seconds since start",
        y_label="latency (ms, log scale)",
        log_y=True,
        reference=_latency_budget(report),
    )
    # Rates per second: the last timeline point may cover less than a second.
    widths = [p.t - (timeline[i - 1].t if i else 0.0) or 1.0 for i, p in enumerate(timeline)]

    def per_second(count: Callable[[TimelinePoint], int]) -> list[tuple[float, float | None]]:
        return [(p.t, count(p) / w) for p, w in zip(timeline, widths, strict=True)]

    throughput = line_chart(
        "chart-throughput",
        "Messages per second: offered (scheduled) and answered",
        [
            Series("offered", BLUE, per_second(lambda p: p.attempted), dashed=True),
            Series("answered", GREEN, per_second(lambda p: p.replies)),
            Series("failed", RED, per_second(lambda p: p.failures)),
        ],
        x_label="seconds since start",
        y_label="messages per second",
    )
    distribution = bar_chart(
        "chart-latency-distribution",
        "Latency distribution (replies per latency bucket)",
        _distribution_bars(report),
        x_label="latency (ms)",
        y_label="replies",
        color=AMBER,
    )
    spread = report.workers.spread
    workers = bar_chart(
        "chart-workers",
        "Connections per worker (from welcome frames)"
        + (f", spread max/min {spread:.2f}" if spread is not None else ""),
        [(key, float(n)) for key, n in report.workers.connections.items()],
        x_label="worker",
        y_label="connections",
    )
    return [latency, throughput, distribution, workers]


_CSS = """
body { font: 14px/1.45 system-ui, sans-serif; color: #111827; margin: 24px auto; max-width: 820px; }
h1 { font-size: 22px; margin: 0 0 4px; }
.verdict { padding: 10px 14px; border-radius: 6px; font-weight: 600; margin: 12px 0; }
.pass { background: #dcfce7; color: #166534; } .fail { background: #fee2e2; color: #991b1b; }
table { border-collapse: collapse; margin: 8px 0 18px; }
td, th { padding: 3px 12px 3px 0; text-align: left; vertical-align: top; }
th { color: #4b5563; font-weight: 500; }
figure { margin: 18px 0; } figcaption { font-weight: 600; margin-bottom: 4px; }
.chart { background: #fff; border: 1px solid #e5e7eb; }
.grid { stroke: #e5e7eb; } .line { fill: none; stroke-width: 1.5; }
.reference { stroke-dasharray: 6 4; stroke-width: 1.5; }
.dashed { stroke-dasharray: 7 4; stroke-width: 3; }
.tick, .legend { font-size: 11px; fill: #374151; } .axis-label { font-size: 12px; fill: #4b5563; }
.muted { color: #6b7280; }
"""


def _rows(rows: Sequence[tuple[str, str]]) -> str:
    return "".join(f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rows)


def render_html(report: Report) -> str:
    c, m, lat, r, cpu = report.connection, report.messages, report.latency, report.rate, report.cpu
    verdict = (
        "PASSED: every threshold holds"
        if report.passed
        else "FAILED: " + ", ".join(t.threshold for t in report.thresholds if not t.passed)
    )
    summary = [
        ("connection success", f"{format_pct(c.success_pct)} ({c.succeeded:,} of {c.attempted:,})"),
        ("message success", f"{format_pct(m.success_pct)} ({m.succeeded:,} of {m.attempted:,})"),
        (
            "latency",
            f"avg {format_ms(lat.avg_ms)} · p50 {format_ms(lat.p50_ms)} · p90"
            f" {format_ms(lat.p90_ms)} · p99 {format_ms(lat.p99_ms)} · max {format_ms(lat.max_ms)}",
        ),
        (
            "rate",
            f"offered {r.offered_per_s:,.1f} msg/s · achieved {r.achieved_per_s:,.1f} msg/s"
            f" · planned {r.planned_per_s:,.1f} msg/s",
        ),
        ("deliveries", format_counts(m.deliveries)),
        ("delivery success", format_delivery(report.delivery)),
        ("errors", format_counts(error_kinds(report))),
        (
            "load generator CPU",
            f"{cpu.cpu_s:.2f} s over {cpu.wall_s:.1f} s = {cpu.percent_of_core:.1f} % of one core",
        ),
        ("load generator memory", format_memory(cpu)),
    ]
    thresholds = "".join(
        f'<tr><td class="{"pass" if t.passed else "fail"}">{"PASS" if t.passed else "FAIL"}</td>'
        f"<td><code>{escape(t.threshold)}</code></td><td>{escape(format_observed(t))}</td></tr>"
        for t in report.thresholds
    )
    pairs = "".join(
        f'<tr data-sender="{escape(p.sender)}" data-recipient="{escape(p.recipient)}"'
        f' data-expected="{p.expected}" data-received="{p.received}"'
        f' data-duplicates="{p.duplicates}"'
        f' class="{"pass" if p.missing == 0 and p.duplicates == 0 else "fail"}">'
        f"<td>{escape(p.sender)} → {escape(p.recipient)}</td><td>{p.expected:,}</td>"
        f"<td>{p.received:,}</td><td>{p.missing:,}</td><td>{p.duplicates:,}</td>"
        f"<td>{escape(format_pct(p.success_pct))}</td></tr>"
        for p in report.delivery.pairs
    )
    by_instance = (
        [
            "<h2>Deliveries by instance</h2>",
            "<p class=\"muted\">sender's instance → recipient's instance; instances:"
            f" {escape(targets(report.urls))}</p>",
            '<table id="delivery-pairs"><tr><th>instances</th><th>expected</th><th>received</th>'
            f"<th>missing</th><th>duplicates</th><th>success</th></tr>{pairs}</table>",
        ]
        if pairs
        else []
    )
    run = [
        ("target", ", ".join(report.urls)),
        ("connections", f"{report.connections:,}"),
        ("interval", f"{report.interval_s:g} s per connection"),
        ("duration", f"{report.duration_s:g} s after a {report.ramp_up_s:g} s ramp-up"),
        ("mix", report.mix),
        ("seed", str(report.seed)),
        ("started", report.started_at),
    ]
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>wsmon loadtest {escape(report.profile)}: "
            f"{'passed' if report.passed else 'failed'}</title>",
            f"<style>{_CSS}</style></head><body>",
            f"<h1>wsmon loadtest: {escape(report.profile)}</h1>",
            f'<p class="muted">{escape(report.started_at)} · {escape(", ".join(report.urls))}</p>',
            f'<div id="verdict" class="verdict {"pass" if report.passed else "fail"}">'
            f"{escape(verdict)}</div>",
            f'<table id="summary">{_rows(summary)}</table>',
            f'<h2>Thresholds</h2><table id="thresholds">{thresholds}</table>',
            *by_instance,
            *charts(report),
            f'<h2>Run</h2><table id="run">{_rows(run)}</table>',
            "</body></html>",
        ]
    )


def write_html(report: Report, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_html(report), encoding="utf-8")
