"""The few Prometheus template functions alert annotations use, reimplemented to predict them.

promtool's unit tests compare annotations exactly, so the generated tests must know how
Prometheus will print `{{ $value | humanizePercentage }}` and friends. These follow
prometheus/template/template.go (2.x); Go's `%.4g` and Python's `.4g` format alike.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Final

_ACTION: Final = re.compile(r"\{\{\s*(.*?)\s*\}\}")


def go_float(value: float) -> str:
    """A float64 printed by text/template (`%v`, the shortest exact form)."""
    if value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return repr(value)


def humanize_percentage(value: float) -> str:
    return f"{value * 100:.4g}%"


def humanize_duration(value: float) -> str:
    if math.isnan(value) or math.isinf(value):
        return f"{value:.4g}"
    if value == 0:
        return f"{value:.4g}s"
    if abs(value) >= 1:
        sign = "-" if value < 0 else ""
        value = abs(value)
        whole = int(value)
        seconds = value - whole + whole % 60
        minutes, hours, days = whole // 60 % 60, whole // 3600 % 24, whole // 86400
        if days:
            return f"{sign}{days}d {hours}h {minutes}m {seconds:.4g}s"
        if hours:
            return f"{sign}{hours}h {minutes}m {seconds:.4g}s"
        if minutes:
            return f"{sign}{minutes}m {seconds:.4g}s"
        return f"{sign}{seconds:.4g}s"
    prefix = ""
    for step in ("m", "u", "n", "p", "f", "a", "z", "y"):
        if abs(value) >= 1:
            break
        prefix = step
        value *= 1000
    return f"{value:.4g}{prefix}s"


def render(template: str, labels: Mapping[str, str], value: float) -> str:
    """Expand an annotation the way Prometheus would; unknown actions are an error, not a guess."""

    def action(match: re.Match[str]) -> str:
        expression = match.group(1)
        if expression.startswith("$labels."):
            return labels.get(expression.removeprefix("$labels."), "")
        if expression == "$value":
            return go_float(value)
        if expression == "$value | humanizePercentage":
            return humanize_percentage(value)
        if expression == "$value | humanizeDuration":
            return humanize_duration(value)
        if expression == '$value | printf "%.2f"':
            return f"{value:.2f}"
        raise ValueError(f"cannot predict the template action {{{{ {expression} }}}}")

    return _ACTION.sub(action, template)
