"""thresholds.yaml, the admin's list of alert thresholds: read it and check every entry.

Pure: `parse` turns already-loaded YAML into `Threshold`s or raises `ThresholdsError` listing every
problem, each naming the file, the entry (1-based, with its name) and the field, e.g.
`thresholds.yaml: entry 3 ('HighErrorRate'): condition: must be one of >, >=, <, <=, got '=>'`.
"""

from __future__ import annotations

import difflib
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable
from types import MappingProxyType
from typing import Any, Final

from wsmon.yamlfile import YamlFileError, read_yaml, shown

from .indicators import BY_KEY, Indicator

# The four comparisons a threshold may use, in the order error messages list them; the load
# generator's k6-style thresholds (wsmon.loadgen.thresholds) compare with the same table.
CONDITIONS: Final[Mapping[str, Callable[[float, float], bool]]] = MappingProxyType(
    {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}
)
SEVERITIES: Final = ("warning", "critical")
FIELDS: Final = ("name", "metric", "condition", "value", "for", "severity", "enabled")
# Prometheus's duration syntax (as in a rule's `for:`), units largest first, at least one.
_DURATION = re.compile(r"^(?!$)(\d+y)?(\d+w)?(\d+d)?(\d+h)?(\d+m)?(\d+s)?(\d+ms)?$")
_DURATION_UNITS: Final = {"y": 31536000, "w": 604800, "d": 86400, "h": 3600, "m": 60, "s": 1}
# An alert name is a Prometheus label value, but Alertmanager, amtool and the runbook anchors all
# expect an identifier.
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# The packaged defaults: the admin's file of the alerting mixin, which the server's /api/health
# judges by too. Located as package data, so reading it imports nothing of wsmon.alerting.
DEFAULT_THRESHOLDS: Final[Traversable] = files("wsmon").joinpath("alerting", "thresholds.yaml")


class ThresholdsError(ValueError):
    """thresholds.yaml cannot be used; one line per problem."""


@dataclass(frozen=True)
class Threshold:
    name: str
    metric: str
    condition: str
    value: float
    for_: str
    severity: str
    enabled: bool

    @property
    def indicator(self) -> Indicator:
        return BY_KEY[self.metric]

    def holds(self, measured: float) -> bool:
        """True when `measured` is past the threshold (the alert's condition is met)."""
        return CONDITIONS[self.condition](measured, self.value)

    def text(self) -> str:
        """`> 1%`: the condition as people read it."""
        return f"{self.condition} {self.indicator.display(self.value)}"

    def to_json(self) -> dict[str, Any]:
        """What the Jsonnet mixin receives: the entry, its value written for PromQL and prose."""
        return {
            "name": self.name,
            "metric": self.metric,
            "condition": self.condition,
            # Shortest exact form (Jsonnet would print 0.98999999999999999), 1 rather than 1.0.
            "value": str(int(self.value)) if self.value.is_integer() else repr(self.value),
            "display": self.indicator.display(self.value),
            "for": self.for_,
            "severity": self.severity,
            "enabled": self.enabled,
        }


def duration_seconds(text: str) -> float:
    """Seconds in a Prometheus duration (`1h30m`, `500ms`); ValueError when it is not one."""
    if not _DURATION.match(text):
        raise ValueError(f"not a duration like 30s, 5m, 2h or 1h30m: {text!r}")
    total = 0.0
    for amount, unit in re.findall(r"(\d+)(ms|[ywdhms])", text):
        total += int(amount) / 1000 if unit == "ms" else int(amount) * _DURATION_UNITS[unit]
    return total


def _check_value(raw: Any, indicator: Indicator | None, condition: str | None) -> str | None:
    """The problem with `value`, or None; knows the metric's range so 80 for 80 % is caught."""
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        return f"must be a number, got {shown(raw)}"
    if indicator is None:
        return None
    try:
        value = float(raw)
    except OverflowError:  # an integer of hundreds of digits
        return f"must be a number in {indicator.range_text()}, got {shown(raw)}"
    if not indicator.low <= value <= indicator.high:
        return f"must be {indicator.range_text()} for {indicator.key}, got {shown(raw)}"
    if condition is None:
        return None
    # A threshold at the edge of the range is always or never past: a typo, not a choice.
    # Conditions are monotonic, so looking at the two ends of the range is enough.
    holds_at_ends = [CONDITIONS[condition](end, value) for end in (indicator.low, indicator.high)]
    span = f"{indicator.key}, which lies in [{indicator.low:g}, {indicator.high:g}]"
    if all(holds_at_ends):
        return f"'{condition} {raw}' always holds for {span}"
    if not any(holds_at_ends):
        return f"'{condition} {raw}' never holds for {span}"
    return None


def _entry_problems(entry: Any) -> list[tuple[str, str]]:
    """(field, problem) pairs for one entry; empty when it is good."""
    if not isinstance(entry, dict):
        return [("entry", f"must be a mapping of {', '.join(FIELDS)}, got {type(entry).__name__}")]
    problems: list[tuple[str, str]] = []
    for key in entry:
        if key not in FIELDS:
            close = difflib.get_close_matches(str(key), FIELDS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            # Quoted and cut short: a key is the file's text, and may hold a newline.
            problems.append((shown(key), f"unknown field{hint}; fields are {', '.join(FIELDS)}"))
    for field in FIELDS:
        if field not in entry:
            problems.append((field, "missing"))
    name = entry.get("name")
    if "name" in entry and not (isinstance(name, str) and _NAME.match(name)):
        problems.append(("name", f"must be an identifier like HighErrorRate, got {shown(name)}"))
    metric = entry.get("metric")
    indicator = BY_KEY.get(metric) if isinstance(metric, str) else None
    if "metric" in entry and indicator is None:
        close = difflib.get_close_matches(str(metric), BY_KEY, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        problems.append(
            ("metric", f"unknown metric {shown(metric)}{hint}; known: {', '.join(BY_KEY)}")
        )
    raw_condition = entry.get("condition")
    # isinstance first: a YAML list or mapping here is unhashable, so no dict lookup.
    valid = isinstance(raw_condition, str) and raw_condition in CONDITIONS
    condition = raw_condition if valid else None
    if "condition" in entry and condition is None:
        choices = ", ".join(CONDITIONS)
        problems.append(("condition", f"must be one of {choices}, got {shown(raw_condition)}"))
    if "value" in entry and (problem := _check_value(entry["value"], indicator, condition)):
        problems.append(("value", problem))
    duration = entry.get("for")
    if "for" in entry and not (isinstance(duration, str) and _DURATION.match(duration)):
        problems.append(
            ("for", f"must be a duration like 0s, 30s, 5m or 1h, got {shown(duration)}")
        )
    severity = entry.get("severity")
    if "severity" in entry and severity not in SEVERITIES:
        problems.append(
            ("severity", f"must be one of {', '.join(SEVERITIES)}, got {shown(severity)}")
        )
    elif severity == "critical" and indicator is not None and not indicator.may_page:
        problems.append(
            (
                "severity",
                f"must be warning for {indicator.key}: clients drive it, and one client's "
                "traffic must not page on-call",
            )
        )
    if "enabled" in entry and not isinstance(entry["enabled"], bool):
        problems.append(("enabled", f"must be true or false, got {shown(entry['enabled'])}"))
    return problems


def parse(data: Any, source: str) -> tuple[Threshold, ...]:
    """Check the loaded YAML document of `source` (a file name for messages) and convert it."""
    if not isinstance(data, list):
        raise ThresholdsError(f"{source}: must be a list of thresholds, got {type(data).__name__}")
    errors: list[str] = []
    seen: dict[str, int] = {}
    for number, entry in enumerate(data, start=1):
        name = entry.get("name") if isinstance(entry, dict) else None
        where = f"{source}: entry {number}" + (f" ({shown(name)})" if isinstance(name, str) else "")
        problems = _entry_problems(entry)
        if isinstance(name, str):
            if name in seen:
                problems.append(("name", f"duplicate of entry {seen[name]}"))
            seen.setdefault(name, number)
        errors.extend(f"{where}: {field}: {problem}" for field, problem in problems)
    if errors:
        raise ThresholdsError("\n".join(errors))
    return tuple(
        Threshold(
            name=entry["name"],
            metric=entry["metric"],
            condition=entry["condition"],
            value=float(entry["value"]),
            for_=entry["for"],
            severity=entry["severity"],
            enabled=entry["enabled"],
        )
        for entry in data
    )


def load(path: Traversable) -> tuple[Threshold, ...]:
    """Read and check a thresholds file; every problem is in the one ThresholdsError."""
    try:
        data = read_yaml(path, "thresholds")
    except YamlFileError as exc:
        raise ThresholdsError(str(exc)) from None
    return parse(data, str(path))
