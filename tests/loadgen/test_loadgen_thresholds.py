"""k6-style thresholds: parsing with units, overriding the defaults, evaluation."""

from __future__ import annotations

import pytest

from wsmon.loadgen.cli import default_grace
from wsmon.loadgen.thresholds import (
    DEFAULT_THRESHOLDS,
    Threshold,
    ThresholdError,
    evaluate,
    latency_budget_ms,
    merge,
    parse_threshold,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("p99<200ms", Threshold("p99", "<", 200, "ms")),
        ("p(95) <= 1.5s", Threshold("p95", "<=", 1500, "ms")),
        ("p99.9<500us", Threshold("p99.9", "<", 0.5, "ms")),
        ("avg<50", Threshold("avg", "<", 50, "ms")),
        ("med<10ms", Threshold("p50", "<", 10, "ms")),
        ("max<2s", Threshold("max", "<", 2000, "ms")),
        ("message_success>99%", Threshold("message_success", ">", 99, "%")),
        ("connection_success>=95.5%", Threshold("connection_success", ">=", 95.5, "%")),
        ("worker_spread<1.5", Threshold("worker_spread", "<", 1.5, "")),
    ],
)
def test_parse(text: str, expected: Threshold) -> None:
    threshold = parse_threshold(text)
    assert threshold.metric == expected.metric
    assert threshold.op == expected.op
    assert threshold.limit == pytest.approx(expected.limit)
    assert threshold.unit == expected.unit


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("p99", "expected METRIC<VALUE"),
        ("p99<fast", "expected METRIC<VALUE"),
        ("latency<200ms", "unknown metric 'latency'"),
        ("message_success>98", "write it with %"),
        ("message_success>101%", "cannot exceed 100"),
        ("p99<200m", "latency units are us, ms or s"),
        ("p0<1ms", "percentile must be in"),
        ("worker_spread<2x", "plain ratio"),
    ],
)
def test_parse_errors_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ThresholdError, match=message):
        parse_threshold(text)


@pytest.mark.parametrize(
    ("observed", "passed"),
    [
        ({"connection_success": 95.01, "message_success": 98.01, "p99": 199.9}, True),
        ({"connection_success": 95.0, "message_success": 98.01, "p99": 199.9}, False),
        ({"connection_success": 95.01, "message_success": 98.0, "p99": 199.9}, False),
        ({"connection_success": 95.01, "message_success": 98.01, "p99": 200.0}, False),
    ],
)
def test_without_thresholds_a_run_is_judged_as_the_guides_healthy_system(
    observed: dict[str, float], passed: bool
) -> None:
    """Over 95 % of connections and 98 % of messages succeed and p99 stays under 200 ms."""
    verdicts = evaluate(DEFAULT_THRESHOLDS, observed.get)
    assert all(v.passed for v in verdicts) is passed


def test_a_given_threshold_replaces_the_default_on_its_metric_and_adds_others() -> None:
    given = [parse_threshold("p99<150ms"), parse_threshold("avg<50ms")]
    assert [str(t) for t in merge(DEFAULT_THRESHOLDS, given)] == [
        "connection_success>95%",
        "message_success>98%",
        "p99<150ms",
        "avg<50ms",
    ]


def test_evaluate_passes_fails_and_never_passes_without_data() -> None:
    observed = {"p99": 150.0, "message_success": 98.0, "avg": None}
    verdicts = evaluate(
        [
            parse_threshold("p99<200ms"),
            parse_threshold("p99<150ms"),
            parse_threshold("p99<=150ms"),
            parse_threshold("message_success>98%"),
            parse_threshold("avg<1s"),
        ],
        observed.get,
    )
    assert [v.passed for v in verdicts] == [True, False, True, False, False]
    assert verdicts[-1].observed is None


def test_latency_budget_is_the_tightest_upper_bound() -> None:
    assert latency_budget_ms(DEFAULT_THRESHOLDS) == 200
    assert latency_budget_ms([parse_threshold("avg<50ms"), *DEFAULT_THRESHOLDS]) == 50
    assert latency_budget_ms([parse_threshold("message_success>1%")]) is None


@pytest.mark.parametrize(
    ("thresholds", "grace"),
    [
        (["p99<200ms"], 1.0),  # 2 x 0.2 s, raised to the 1 s floor
        (["p99<2s"], 4.0),
        (["p99<10s"], 5.0),  # capped
        ([], 5.0),  # no latency bound at all
    ],
)
def test_default_grace_follows_the_latency_budget(thresholds: list[str], grace: float) -> None:
    assert default_grace([parse_threshold(t) for t in thresholds]) == grace
