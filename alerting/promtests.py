"""promtool unit tests generated from thresholds.yaml: every alert fires once and stays quiet once.

Each case feeds raw wsmon series (counters, gauges, histogram buckets; never the recording rules
themselves) chosen so the indicator lands just past the threshold, or just short of it, and checks
the alert's labels and annotations exactly, value included. The series model here is written
independently of rules.libsonnet, so a wrong rule fails its own test.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Final

from wsmon.catalogue import LATENCY_BUCKETS
from wsmon.indicators import BOOLEAN
from wsmon.thresholds import Threshold, ThresholdsError, duration_seconds

from . import gotemplate

INSTANCE: Final = {"job": "wsmon", "instance": "wsmon-0:8080"}
RATE_WINDOW_MINUTES: Final = 5  # the production rate window; enough samples for every rate
PER_MINUTE: Final = 6000  # 100 messages (or connections, or observations) a second
CAPACITY: Final = 500  # per worker, two workers
BASE_CONNECTIONS: Final = 100  # the idlest worker's connections in the imbalance cases
QUANTILE: Final = 0.99
HISTOGRAMS: Final = {
    "p99_latency": ("wsmon_message_latency_seconds", "echo"),
    "broadcast_time": ("wsmon_broadcast_duration_seconds", "broadcast"),
}

Series = list[dict[str, str]]


def _selector(name: str, **labels: str) -> str:
    merged = {**INSTANCE, **labels}
    return name + "{" + ", ".join(f'{k}="{v}"' for k, v in merged.items()) + "}"


def _number(value: float) -> str:
    return f"{value:.10g}"


def _counter(name: str, per_minute: float, steps: int, **labels: str) -> dict[str, str]:
    return {"series": _selector(name, **labels), "values": f"0+{_number(per_minute)}x{steps}"}


def _gauge(name: str, value: float, steps: int, **labels: str) -> dict[str, str]:
    return {"series": _selector(name, **labels), "values": f"{_number(value)}+0x{steps}"}


def _quantile_of_bucket(index: int) -> float:
    """histogram_quantile(0.99) when every observation falls in bucket `index` (+Inf: the last)."""
    if index == len(LATENCY_BUCKETS):
        return LATENCY_BUCKETS[-1]  # Prometheus answers the highest finite bound
    lower = LATENCY_BUCKETS[index - 1] if index else 0.0
    upper = LATENCY_BUCKETS[index]
    return lower + (upper - lower) * QUANTILE


def _histogram(key: str, value: float, steps: int) -> Series:
    name, message_type = HISTOGRAMS[key]
    index = next(i for i in range(len(LATENCY_BUCKETS) + 1) if _quantile_of_bucket(i) == value)
    edges = [_number(bound) for bound in LATENCY_BUCKETS] + ["+Inf"]
    series = [
        _counter(f"{name}_bucket", PER_MINUTE if i >= index else 0, steps, type=message_type, le=le)
        for i, le in enumerate(edges)
    ]
    series.append(_counter(f"{name}_count", PER_MINUTE, steps, type=message_type))
    series.append(_counter(f"{name}_sum", PER_MINUTE * value, steps, type=message_type))
    return series


def _error_series(error_ratio: float, steps: int) -> Series:
    return [
        _counter("wsmon_messages_received_total", PER_MINUTE, steps, type="echo"),
        _counter(
            "wsmon_message_errors_total",
            PER_MINUTE * error_ratio,
            steps,
            type="invalid",
            reason="invalid_json",
        ),
    ]


# indicator key -> the raw series that make it read `value`.
_SCENARIOS: Final[dict[str, Callable[[float, int], Series]]] = {
    "message_error_rate": _error_series,
    "message_success_rate": lambda v, n: _error_series(1 - v, n),
    "average_latency": lambda v, n: [
        _counter("wsmon_message_latency_seconds_count", PER_MINUTE, n, type="echo"),
        _counter("wsmon_message_latency_seconds_sum", PER_MINUTE * v, n, type="echo"),
    ],
    "p99_latency": lambda v, n: _histogram("p99_latency", v, n),
    "pool_utilization": lambda v, n: [
        series
        for worker in ("0", "1")
        for series in (
            _gauge("wsmon_connections_active", CAPACITY * v, n, worker=worker),
            _gauge("wsmon_pool_capacity", CAPACITY, n, worker=worker),
        )
    ],
    "connection_rejection_rate": lambda v, n: [
        _counter("wsmon_connections_opened_total", PER_MINUTE * (1 - v), n, worker="0"),
        _counter("wsmon_connections_rejected_total", PER_MINUTE * v, n, reason="capacity"),
    ],
    "worker_imbalance": lambda v, n: [
        _gauge("wsmon_connections_active", BASE_CONNECTIONS * v, n, worker="0"),
        _gauge("wsmon_connections_active", BASE_CONNECTIONS, n, worker="1"),
    ],
    "broadcast_time": lambda v, n: _histogram("broadcast_time", v, n),
    "probe_failure": lambda v, n: [_gauge("wsmon_probe_success", 1 - v, n, probe="echo")],
    "instance_down": lambda v, n: [_gauge("up", 1 - v, n)],
}


def _continuous_target(threshold: Threshold, upward: bool) -> float:
    """A value a tenth of the way from the threshold towards the end of the range."""
    value, indicator = threshold.value, threshold.indicator
    if upward:
        end = indicator.high if math.isfinite(indicator.high) else value + max(value, 0.01)
    else:
        end = indicator.low
    exact = value + (end - value) / 10
    # Four significant digits keep the expected annotation clear of float noise.
    rounded = float(f"{exact:.4g}")
    return rounded if threshold.holds(rounded) == threshold.holds(exact) else exact


def target(threshold: Threshold, fire: bool) -> float:
    """The indicator value a case sets up: past the threshold when `fire`, short of it otherwise."""
    key = threshold.indicator.key
    if key in HISTOGRAMS:
        candidates = [_quantile_of_bucket(i) for i in range(len(LATENCY_BUCKETS) + 1)]
    elif threshold.indicator.unit == BOOLEAN:
        candidates = [0.0, 1.0]
    else:
        upward = (threshold.condition in (">", ">=")) == fire
        candidates = [_continuous_target(threshold, upward)]
    good = [c for c in candidates if threshold.holds(c) == fire]
    if not good:
        state = "firing" if fire else "quiet"
        raise ThresholdsError(
            f"{threshold.name}: value: no {key} series can make a {state} test case for "
            f"'{threshold.condition} {threshold.value:g}'"
        )
    return min(good, key=lambda c: abs(c - threshold.value))


def _case(threshold: Threshold, rule: dict[str, Any], fire: bool) -> dict[str, Any]:
    value = target(threshold, fire)
    minutes = math.ceil(duration_seconds(threshold.for_) / 60) + RATE_WINDOW_MINUTES
    expected: list[dict[str, Any]] = []
    if fire:
        labels = {**rule["labels"], **INSTANCE}
        annotations = {
            key: gotemplate.render(text, labels, value) for key, text in rule["annotations"].items()
        }
        expected.append({"exp_labels": labels, "exp_annotations": annotations})
    checks = [{"eval_time": f"{minutes}m", "alertname": threshold.name, "exp_alerts": expected}]
    # Still pending a minute before `for` has passed (the condition holds from 0m or 1m on).
    pending = math.floor(duration_seconds(threshold.for_) / 60) - 1
    if fire and pending >= 1:
        checks.insert(
            0, {"eval_time": f"{pending}m", "alertname": threshold.name, "exp_alerts": []}
        )
    shown = threshold.indicator.display(value)
    verb = "fires" if fire else "stays quiet"
    return {
        "name": f"{threshold.name} {verb} at {threshold.metric} {shown} ({threshold.text()})",
        "interval": "1m",
        "input_series": _SCENARIOS[threshold.metric](value, minutes + 1),
        "alert_rule_test": checks,
    }


def document(
    thresholds: tuple[Threshold, ...], rules: dict[str, Any], rules_file: str
) -> dict[str, Any]:
    """The promtool test file for `rules` (the generated rules.yaml, as data)."""
    alerts = {
        rule["alert"]: rule
        for group in rules["groups"]
        for rule in group["rules"]
        if "alert" in rule
    }
    return {
        "rule_files": [rules_file],
        "evaluation_interval": "1m",
        "tests": [
            _case(threshold, alerts[threshold.name], fire)
            for threshold in thresholds
            if threshold.enabled
            for fire in (True, False)
        ],
    }
