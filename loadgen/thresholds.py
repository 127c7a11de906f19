"""k6-style pass/fail thresholds: parse `p99<200ms`, `message_success>98%`; evaluate them.

Pure functions of their inputs. Metrics and their units:

- `connection_success`, `message_success`, `delivery_success`: a percentage, written with `%`
  (`>95%`).
- latency statistics `avg`, `min`, `med`, `max`, `pN` (`p50`, `p99`, `p99.9`, or k6's `p(99)`):
  a duration in `us`, `ms` (the default when no unit is given) or `s`.
- `worker_spread`: connections on the busiest worker divided by those on the idlest, a plain number.
- `delivery_duplicates`: deliveries a connection received a second time, a plain count.

The guide's healthy system is connection success > 95 %, message success > 98 % and latency
< 200 ms. "Latency" is read as the 99th percentile: an average or a median hides the slowest
1 in 100 replies, which is where a stalled worker or a queue shows first.

A mix that fans out (chat, publish, notify, broadcast) adds `delivery_success>98%` and
`delivery_duplicates<1`: the same bar for a delivery as for a reply, and exactly once. A healthy
server, one or several behind a broker, meets both always: the load generator only expects a
delivery that the protocol owes (delivery.py), and waits for it as long as for a reply.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final

from wsmon.thresholds import CONDITIONS

PERCENT: Final = "%"
MILLISECONDS: Final = "ms"
RATIO: Final = ""

RATE_METRICS: Final = ("connection_success", "message_success", "delivery_success")
LATENCY_METRICS: Final = ("avg", "min", "max")  # plus any pN
RATIO_METRICS: Final = ("worker_spread", "delivery_duplicates")
COUNT_METRICS: Final = ("delivery_duplicates",)  # plain numbers shown as whole counts
_ALIASES: Final = {"med": "p50"}

_SYNTAX = re.compile(
    r"""^\s*(?P<metric>p\(\s*[0-9.]+\s*\)|[a-z_][a-z0-9_.]*)
        \s*(?P<op><=|>=|<|>)
        \s*(?P<value>[0-9]+(?:\.[0-9]+)?)
        \s*(?P<unit>[a-zµ%]*)\s*$""",
    re.VERBOSE,
)
_PERCENTILE = re.compile(r"^p\(?\s*([0-9]+(?:\.[0-9]+)?)\s*\)?$")
_TO_MS: Final = {"us": 0.001, "µs": 0.001, "ms": 1.0, "s": 1000.0, "": 1.0}
EXAMPLES: Final = (
    "e.g. 'p99<200ms', 'avg<=50ms', 'message_success>98%', 'delivery_success>99.9%',"
    " 'worker_spread<1.5'"
)


class ThresholdError(ValueError):
    """A threshold that cannot be parsed; the message quotes it and says what was expected."""


@dataclass(frozen=True)
class Threshold:
    """`metric op limit`; the limit is in the metric's canonical unit (ms, %, or a ratio)."""

    metric: str
    op: str
    limit: float
    unit: str

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.limit:g}{self.unit}"

    def holds(self, observed: float) -> bool:
        return CONDITIONS[self.op](observed, self.limit)


@dataclass(frozen=True)
class Verdict:
    threshold: Threshold
    observed: float | None  # None: nothing was measured, which never passes
    passed: bool


def percentile_of(metric: str) -> float | None:
    """50.0 for `p50`, 99.9 for `p99.9`; None when the metric is not a percentile."""
    match = _PERCENTILE.match(metric)
    return float(match.group(1)) if match else None


def _canonical_metric(raw: str, text: str) -> str:
    metric = _ALIASES.get(raw, raw)
    percentile = percentile_of(metric)
    if percentile is not None:
        if not 0 < percentile <= 100:
            raise ThresholdError(f"{text!r}: a percentile must be in (0, 100], got {percentile:g}")
        return f"p{percentile:g}"
    if metric in RATE_METRICS or metric in LATENCY_METRICS or metric in RATIO_METRICS:
        return metric
    known = ", ".join((*RATE_METRICS, *LATENCY_METRICS, "med", "pN", *RATIO_METRICS))
    raise ThresholdError(f"{text!r}: unknown metric {raw!r}; known: {known}")


def parse_threshold(text: str) -> Threshold:
    match = _SYNTAX.match(text)
    if match is None:
        raise ThresholdError(f"{text!r}: expected METRIC<VALUE or METRIC>VALUE, {EXAMPLES}")
    metric = _canonical_metric(match["metric"].replace(" ", ""), text)
    value, unit = float(match["value"]), match["unit"]
    if metric in RATE_METRICS:
        if unit != PERCENT:
            raise ThresholdError(f"{text!r}: {metric} is a percentage; write it with %, e.g. >95%")
        if value > 100:
            raise ThresholdError(f"{text!r}: a percentage cannot exceed 100")
        return Threshold(metric, match["op"], value, PERCENT)
    if metric in RATIO_METRICS:
        if unit:
            what = "count" if metric in COUNT_METRICS else "ratio"
            raise ThresholdError(f"{text!r}: {metric} is a plain {what}, without a unit")
        return Threshold(metric, match["op"], value, RATIO)
    if unit not in _TO_MS:
        raise ThresholdError(f"{text!r}: latency units are us, ms or s, got {unit!r}")
    return Threshold(metric, match["op"], value * _TO_MS[unit], MILLISECONDS)


DEFAULT_THRESHOLDS: Final = tuple(
    parse_threshold(text) for text in ("connection_success>95%", "message_success>98%", "p99<200ms")
)
# Added when the mix has a type whose deliveries the load generator verifies.
DELIVERY_THRESHOLDS: Final = tuple(
    parse_threshold(text) for text in ("delivery_success>98%", "delivery_duplicates<1")
)


def defaults_for(verified_types: Iterable[str], connections: int = 2) -> tuple[Threshold, ...]:
    """The default thresholds of a run of `connections` whose deliveries of `verified_types` are
    verified: the delivery ones only when some delivery can be expected (a lone connection gets
    its own notify back, but no other member's chat, publish or broadcast).
    """
    types = set(verified_types)
    expectable = "notify" in types or (connections > 1 and bool(types))
    return DEFAULT_THRESHOLDS + (DELIVERY_THRESHOLDS if expectable else ())


def merge(defaults: Iterable[Threshold], given: Iterable[Threshold]) -> list[Threshold]:
    """The given thresholds, plus each default whose metric none of them mentions: so
    `p99<150ms` replaces the default `p99<200ms`, while `avg<50ms` is added to the defaults.
    """
    given = list(given)
    overridden = {threshold.metric for threshold in given}
    return [t for t in defaults if t.metric not in overridden] + given


def latency_budget_ms(thresholds: Iterable[Threshold]) -> float | None:
    """The tightest upper bound any latency threshold sets, or None when none sets one."""
    bounds = [t.limit for t in thresholds if t.unit == MILLISECONDS and t.op in ("<", "<=")]
    return min(bounds, default=None)


def evaluate(
    thresholds: Iterable[Threshold], observe: Callable[[str], float | None]
) -> list[Verdict]:
    """One verdict per threshold; `observe(metric)` gives the measured value in canonical units."""
    verdicts = []
    for threshold in thresholds:
        observed = observe(threshold.metric)
        passed = observed is not None and threshold.holds(observed)
        verdicts.append(Verdict(threshold, observed, passed))
    return verdicts
