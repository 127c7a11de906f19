"""promtool unit tests generated from thresholds.yaml: every alert fires once and stays quiet once,
and one client flooding bad input fires no alert but the client-error warnings.

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
CONNECTIONS: Final = 1000  # in the slow-consumer cases, so 1 % cut off is 10 (the minimum)
# The traffic of issue 8: one client floods bad input until 3 messages in 4 are refused, while the
# server itself fails nothing (its failure counters exist, at 0, as every worker binds them).
FLOOD_CLIENT_ERRORS: Final = 0.75
FLOOD_CASE: Final = "one client floods bad input"
FLOOD_INDICATORS: Final = {
    "message_error_rate": 0.0,
    "message_success_rate": 1.0,
    "client_error_ratio": FLOOD_CLIENT_ERRORS,
}
QUANTILE: Final = 0.99
# indicator key -> (histogram, its `type` label; None: a histogram without one).
HISTOGRAMS: Final[dict[str, tuple[str, str | None]]] = {
    "p99_latency": ("wsmon_message_latency_seconds", "echo"),
    "broadcast_time": ("wsmon_broadcast_duration_seconds", "broadcast"),
    "broker_delay": ("wsmon_broker_delay_seconds", None),
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
    labels = {} if message_type is None else {"type": message_type}
    index = next(i for i in range(len(LATENCY_BUCKETS) + 1) if _quantile_of_bucket(i) == value)
    edges = [_number(bound) for bound in LATENCY_BUCKETS] + ["+Inf"]
    series = [
        _counter(f"{name}_bucket", PER_MINUTE if i >= index else 0, steps, **labels, le=le)
        for i, le in enumerate(edges)
    ]
    series.append(_counter(f"{name}_count", PER_MINUTE, steps, **labels))
    series.append(_counter(f"{name}_sum", PER_MINUTE * value, steps, **labels))
    return series


def _per_received(counter: str, ratio: float, steps: int, **labels: str) -> Series:
    """`counter` moving at `ratio` of the messages received."""
    return [
        _counter("wsmon_messages_received_total", PER_MINUTE, steps, type="echo"),
        _counter(counter, PER_MINUTE * ratio, steps, **labels),
    ]


def _failure_series(ratio: float, steps: int) -> Series:
    return _per_received(
        "wsmon_message_failures_total", ratio, steps, type="echo", reason="internal_error"
    )


def _slow_consumer_series(ratio: float, steps: int) -> Series:
    # Of CONNECTIONS, `ratio` are cut off within one rate window and the rest stay open.
    cut_off = CONNECTIONS * ratio
    still_open = CONNECTIONS - cut_off
    return [
        _gauge("wsmon_connections_active", still_open / 2, steps, worker="0"),
        _gauge("wsmon_connections_active", still_open / 2, steps, worker="1"),
        _counter("wsmon_slow_consumers_disconnected_total", cut_off / RATE_WINDOW_MINUTES, steps),
    ]


def _broker_loss_series(ratio: float, steps: int) -> Series:
    # Of the deliveries meant for the other instances, `ratio` overflowed and the rest were
    # published; the supervisor binds both reasons of the lost counter at start-up.
    return [
        _counter("wsmon_broker_published_total", PER_MINUTE * (1 - ratio), steps),
        _counter("wsmon_broker_lost_total", PER_MINUTE * ratio, steps, reason="overflow"),
        _counter("wsmon_broker_lost_total", 0, steps, reason="disconnected"),
    ]


# indicator key -> the raw series that make it read `value`.
_SCENARIOS: Final[dict[str, Callable[[float, int], Series]]] = {
    "message_error_rate": _failure_series,
    "message_success_rate": lambda v, n: _failure_series(1 - v, n),
    "client_error_ratio": lambda v, n: _per_received(
        "wsmon_client_errors_total", v, n, type="invalid", reason="invalid_json"
    ),
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
    "slow_consumer_ratio": _slow_consumer_series,
    "broadcast_time": lambda v, n: _histogram("broadcast_time", v, n),
    "probe_failure": lambda v, n: [_gauge("wsmon_probe_success", 1 - v, n, probe="echo")],
    "instance_down": lambda v, n: [_gauge("up", 1 - v, n)],
    "broker_down": lambda v, n: [_gauge("wsmon_broker_up", 1 - v, n)],
    "broker_loss_ratio": _broker_loss_series,
    "broker_delay": lambda v, n: _histogram("broker_delay", v, n),
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


def _minutes(threshold: Threshold) -> int:
    """Evaluation time (minutes) by which the alert has fired if its condition held throughout."""
    return math.ceil(duration_seconds(threshold.for_) / 60) + RATE_WINDOW_MINUTES


def _firing(rule: dict[str, Any], value: float) -> dict[str, Any]:
    """The alert promtool must see: the rule's labels and its annotations rendered at `value`."""
    labels = {**rule["labels"], **INSTANCE}
    annotations = {
        key: gotemplate.render(text, labels, value) for key, text in rule["annotations"].items()
    }
    return {"exp_labels": labels, "exp_annotations": annotations}


def _case(threshold: Threshold, rule: dict[str, Any], fire: bool) -> dict[str, Any]:
    value = target(threshold, fire)
    minutes = _minutes(threshold)
    expected = [_firing(rule, value)] if fire else []
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


def _flood_case(enabled: list[Threshold], alerts: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One client floods bad input: every enabled alert is checked once its `for` has passed.

    Only those on client errors may fire (thresholds.py refuses a critical on them); the service's
    own figures read no failure, and every other figure has no series at all.
    """
    minutes = max(_minutes(t) for t in enabled)
    steps = minutes + 1
    good, bad = PER_MINUTE * (1 - FLOOD_CLIENT_ERRORS), PER_MINUTE * FLOOD_CLIENT_ERRORS
    reasons = ("invalid_json", "unknown_type", "binary_frame")
    series = [
        _counter("wsmon_messages_received_total", good, steps, type="echo"),
        _counter("wsmon_messages_received_total", bad, steps, type="invalid"),
        *(
            _counter(
                "wsmon_client_errors_total", bad / len(reasons), steps, type="invalid", reason=r
            )
            for r in reasons
        ),
        _counter("wsmon_message_failures_total", 0, steps, type="echo", reason="internal_error"),
    ]
    checks = []
    for threshold in enabled:
        value = FLOOD_INDICATORS.get(threshold.metric)
        expected = []
        if value is not None and threshold.holds(value):
            expected.append(_firing(alerts[threshold.name], value))
        checks.append(
            {"eval_time": f"{minutes}m", "alertname": threshold.name, "exp_alerts": expected}
        )
    return {
        "name": f"{FLOOD_CASE} ({FLOOD_CLIENT_ERRORS:.0%} client errors, no failures): "
        "no critical fires",
        "interval": "1m",
        "input_series": series,
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
    enabled = [threshold for threshold in thresholds if threshold.enabled]
    cases = [
        _case(threshold, alerts[threshold.name], fire)
        for threshold in enabled
        for fire in (True, False)
    ]
    if enabled:
        cases.append(_flood_case(enabled, alerts))
    return {"rule_files": [rules_file], "evaluation_interval": "1m", "tests": cases}
