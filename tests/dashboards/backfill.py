"""Weeks of wsmon's raw series as OpenMetrics text, for `promtool tsdb create-blocks-from
openmetrics`: the history a Prometheus would hold after a month of scraping one instance.

Only the series some expressions read are written (`specs_read`), with the catalogue's kind and
labels, so the backfill follows the dashboard. Every figure follows one load curve: a daily wave
(lowest at 03:00 UTC, highest at 15:00), weekends at 70 %, a few percent of noise, and growth
that doubles the load over the span, so week-over-week comparisons, daily peaks and linear
predictions all have something to say. Gauges are levels of that curve, counters accumulate a
rate proportional to it, and histograms observe a log-normal distribution whose median rises with
the load (so quantiles move too).
"""

from __future__ import annotations

import math
import random
import re
import subprocess
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import accumulate, product
from pathlib import Path
from typing import Final, TextIO

from prometheus_client.utils import floatToGoString
from support.stack import tool

from wsmon import __version__
from wsmon.catalogue import (
    CLOSE_CODES,
    COUNTER,
    DROP_REASONS,
    FANOUT_TYPES,
    GAUGE,
    HISTOGRAM,
    OTHER,
    SPECS,
    Spec,
)
from wsmon.exporter import protocol
from wsmon.exporter.exposition import BUILD_INFO

DAY: Final = 86_400
JOB: Final = "wsmon"
INSTANCE: Final = "10.0.0.1:8080"
# Two values of each label, where the product has more: enough for `sum by`, `!=` and regular
# expressions to have something to keep or drop, few enough to write a month in seconds.
LABEL_VALUES: Final[Mapping[str, tuple[str, ...]]] = {
    "worker": ("0", "1"),
    "type": ("echo", "chat"),
    "reason": ("invalid_json", "rate_limited"),
    "code": CLOSE_CODES[:2],
    "direction": ("in", "out"),
    "generation": ("0", "1", "2"),
    "version": (__version__,),
    "python": ("3.11.7",),
}
# Where the reasons of a counter are its own (failures are only ever internal_error, ...).
METRIC_LABEL_VALUES: Final[Mapping[tuple[str, str], tuple[str, ...]]] = {
    ("wsmon_message_failures_total", "reason"): ("internal_error",),
    ("wsmon_connections_rejected_total", "reason"): ("capacity", "draining"),
    ("wsmon_deliveries_dropped_total", "reason"): DROP_REASONS,
}
# Every value wsmon can export, of the labels a panel may filter on by name: a filter on any other
# value is a mistake in the dashboard, which a backfill made to match it would hide.
EXPORTED_VALUES: Final[Mapping[str, frozenset[str]]] = {
    "type": frozenset((*protocol.RECEIVED_TYPES, *protocol.SENT_TYPES, *FANOUT_TYPES)),
    "code": frozenset((*CLOSE_CODES, OTHER)),
    "reason": frozenset(
        (
            *(protocol.INVALID_JSON, protocol.NOT_AN_OBJECT, protocol.UNKNOWN_TYPE),
            *(protocol.MISSING_FIELD, protocol.INVALID_FIELD, protocol.BINARY_FRAME),
            *(protocol.RATE_LIMITED, protocol.NOT_IN_ROOM, protocol.TOO_MANY_MEMBERSHIPS),
            *(protocol.TOO_LARGE, protocol.INVALID_FRAME, protocol.INTERNAL_ERROR),
            *DROP_REASONS,
            # wsmon_connections_rejected_total's reasons (the catalogue's help lists them).
            *("capacity", "draining", "no_worker"),
        )
    ),
    "direction": frozenset(("in", "out")),
}
# A gauge's level per series at the first day's peak; constant ones do not follow the load.
LEVELS: Final[Mapping[str, float]] = {
    "wsmon_connections_active": 3_000,  # per worker: 12,000 at the end, against 20,000 capacity
    "wsmon_process_resident_memory_bytes": 150e6,
    "wsmon_process_open_fds": 3_000,
}
CONSTANT: Final[Mapping[str, float]] = {
    "wsmon_pool_capacity": 10_000,
    "wsmon_workers_alive": 2,
    "wsmon_workers_configured": 2,
    "wsmon_build_info": 1,
}
# A counter's (or a histogram's observations') rate per second at the first peak, whole family.
RATES: Final[Mapping[str, float]] = {
    "wsmon_messages_received_total": 1_200,
    "wsmon_messages_sent_total": 3_000,
    "wsmon_client_errors_total": 6,
    "wsmon_message_failures_total": 0.6,
    "wsmon_connections_opened_total": 10,
    "wsmon_connections_closed_total": 10,
    "wsmon_connections_rejected_total": 0.2,
    "wsmon_message_bytes_total": 200_000,
    "wsmon_message_latency_seconds": 1_200,
    "wsmon_delivery_latency_seconds": 3_000,
}
DEFAULT_RATE: Final = 1.0
# A histogram's median with no load, 1.5x at the first peak, 2x at the last; log-normal spread.
MEDIANS: Final[Mapping[str, float]] = {
    "wsmon_message_latency_seconds": 0.002,
    "wsmon_delivery_latency_seconds": 0.004,
    "wsmon_broadcast_duration_seconds": 0.001,
    "wsmon_broadcast_recipients": 20,
    "wsmon_gc_pause_seconds": 0.002,
}
SIGMA: Final = 1.0
# promtool cuts blocks of 2h by default and re-reads its whole input for each one (420 passes
# over 35 days: 28 s for a tenth of a month's backfill); blocks of up to 3 weeks (the largest TSDB
# range under 504h is 486h) need three. Debian's promtool 2.42 takes the flag without listing it.
MAX_BLOCK_DURATION: Final = "504h"
NAME: Final = re.compile(r"\b(wsmon_[a-z0-9_]+)\b")
RECORDED: Final = re.compile(r"\bwsmon:[a-z0-9_:]+")
MATCHER: Final = re.compile(r'(\w+)\s*(=~|=)\s*"([\w|]+)"')
_HISTOGRAM_SUFFIXES: Final = ("_bucket", "_sum", "_count")


class NotRaw(ValueError):
    """An expression reads something that is no raw wsmon series of the catalogue."""


def specs_read(exprs: Iterable[str]) -> list[Spec]:
    """The catalogue entries (and wsmon_build_info) of every wsmon series `exprs` read."""
    specs: dict[str, Spec] = {}
    known = {**SPECS, BUILD_INFO.name: BUILD_INFO}
    for expr in exprs:
        if recorded := RECORDED.search(expr):
            raise NotRaw(
                f"{recorded.group(0)} is a recording rule, which exists only from when "
                f"Prometheus loaded the rules, never in the history: {expr}"
            )
        for name in NAME.findall(expr):
            family = next(
                (
                    name.removesuffix(suffix)
                    for suffix in _HISTOGRAM_SUFFIXES
                    if name.removesuffix(suffix) in SPECS
                    and SPECS[name.removesuffix(suffix)].kind == HISTOGRAM
                ),
                name,
            )
            if family not in known:
                raise NotRaw(f"{name} is not in wsmon's catalogue: {expr}")
            specs[family] = known[family]
    return sorted(specs.values(), key=lambda spec: spec.name)


def literal_values(exprs: Iterable[str]) -> dict[str, set[str]]:
    """Label values the expressions select by name (`type="chat"`, `code=~"1000|1006"`): the
    backfill has them too, so a panel filtering on one finds it; NotRaw for a value wsmon never
    exports."""
    found: dict[str, set[str]] = {}
    for expr in exprs:
        for label, _, value in MATCHER.findall(expr):
            values = set(value.split("|"))
            if unknown := values - EXPORTED_VALUES.get(label, values):
                raise NotRaw(f"wsmon never exports {label}={sorted(unknown)}: {expr}")
            found.setdefault(label, set()).update(values)
    return found


def load_curve(times: Sequence[float]) -> list[float]:
    """Relative load at each time: 1.0 at the first day's peak, about 2 at the last one."""
    start, span = times[0], times[-1] - times[0]
    noise = random.Random(9)
    curve = []
    for t in times:
        hour = (t % DAY) / 3600
        daily = 0.65 + 0.35 * math.cos(2 * math.pi * (hour - 15) / 24)
        weekly = 0.7 if datetime.fromtimestamp(t, UTC).weekday() >= 5 else 1.0
        growth = 1 + (t - start) / span
        curve.append(growth * daily * weekly * (1 + noise.uniform(-0.03, 0.03)))
    return curve


@dataclass(frozen=True)
class Written:
    series: int
    samples: int


def _escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _label_sets(spec: Spec, extra: Mapping[str, set[str]]) -> list[dict[str, str]]:
    axes = [
        sorted(
            set(METRIC_LABEL_VALUES.get((spec.name, label)) or LABEL_VALUES[label])
            | extra.get(label, set())
        )
        for label in spec.labels
    ]
    return [dict(zip(spec.labels, values, strict=True)) for values in product(*axes)]


def _labels(labels: Mapping[str, str]) -> str:
    every = {"job": JOB, "instance": INSTANCE, **labels}
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(every.items())) + "}"


def _lines(
    name: str, labels: Mapping[str, str], times: Sequence[int], values: Iterable[float]
) -> str:
    prefix = name + _labels(labels)
    return "".join(f"{prefix} {value:.12g} {t}\n" for t, value in zip(times, values, strict=True))


def _cdf(bound: float, median: float) -> float:
    """Share of a log-normal's observations at or below `bound`."""
    return 0.5 * (1 + math.erf(math.log(bound / median) / (SIGMA * math.sqrt(2))))


def _family(
    spec: Spec, times: Sequence[int], curve: Sequence[float], extra: Mapping[str, set[str]]
) -> Iterator[str]:
    """The OpenMetrics text of one metric family: its header, then one chunk per series, each in
    time order (what promtool's importer expects)."""
    sets = _label_sets(spec, extra)
    step = times[1] - times[0]
    family = spec.name.removesuffix("_total") if spec.kind == COUNTER else spec.name
    yield f"# TYPE {family} {spec.kind}\n# HELP {family} {_escape(spec.help)}\n"
    for index, labels in enumerate(sets):
        # Series of a family differ a little (one worker busier, one type commoner).
        weight = 1 + 0.2 * math.sin(index + 1)
        if spec.kind == GAUGE:
            if spec.name in CONSTANT:
                yield _lines(spec.name, labels, times, [CONSTANT[spec.name]] * len(times))
            else:
                level = LEVELS.get(spec.name, 1.0) * weight
                yield _lines(spec.name, labels, times, (level * load for load in curve))
            continue
        per_step = RATES.get(spec.name, DEFAULT_RATE) * weight * step / len(sets)
        counts = [per_step * load for load in curve]
        if spec.kind == COUNTER:
            yield _lines(spec.name, labels, times, accumulate(counts))
            continue
        base = MEDIANS.get(spec.name, math.sqrt(spec.buckets[0] * spec.buckets[-1]))
        medians = [base * (1 + min(load, 2) / 2) for load in curve]
        for bound in (*spec.buckets, math.inf):
            # `le` as wsmon writes it ("1.0", "+Inf"): a label value is a string, not a number.
            le = {**labels, "le": floatToGoString(bound)}  # type: ignore[no-untyped-call]
            below = (
                c * (1.0 if bound == math.inf else _cdf(bound, m))
                for c, m in zip(counts, medians, strict=True)
            )
            yield _lines(spec.name + "_bucket", le, times, accumulate(below))
        yield _lines(spec.name + "_count", labels, times, accumulate(counts))
        mean = math.exp(SIGMA**2 / 2)
        sums = (c * m * mean for c, m in zip(counts, medians, strict=True))
        yield _lines(spec.name + "_sum", labels, times, accumulate(sums))


def write(
    out: TextIO,
    specs: Sequence[Spec],
    extra: Mapping[str, set[str]],
    end: float,
    span: float,
    step: int,
) -> Written:
    """Samples every `step` seconds over `span` seconds up to `end`, the last one at `end`
    itself (so an instant query at the time of the test still finds it)."""
    last = int(end)
    times = list(range(last - int(span) // step * step, last + 1, step))
    curve = load_curve(times)
    series = 0
    for spec in specs:
        for chunk in _family(spec, times, curve, extra):
            out.write(chunk)
            series += not chunk.startswith("#")  # one chunk per series, after the header
    out.write("# EOF\n")
    return Written(series, series * len(times))


def create_blocks(source: Path, data: Path, max_block_duration: str = MAX_BLOCK_DURATION) -> None:
    """`source` (OpenMetrics text from `write`) as TSDB blocks in `data`, for a Prometheus started
    on it; `source` is removed once the blocks exist (a month of it is ~100 MB). Shorter blocks
    (the retention test's) cost a pass over `source` each."""
    result = subprocess.run(
        [
            tool("promtool"),
            *("tsdb", "create-blocks-from", "openmetrics", "--quiet"),
            f"--max-block-duration={max_block_duration}",
            str(source),
            str(data),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, f"promtool: {result.stderr}"
    source.unlink()
