"""thresholds.yaml validation: the shipped file is good; a bad entry names entry and field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from wsmon.cli import main
from wsmon.indicators import BY_KEY
from wsmon.thresholds import (
    DEFAULT_THRESHOLDS,
    Threshold,
    ThresholdsError,
    duration_seconds,
    load,
    parse,
)

GOOD: dict[str, Any] = {
    "name": "HighErrorRate",
    "metric": "message_error_rate",
    "condition": ">",
    "value": 0.01,
    "for": "5m",
    "severity": "warning",
    "enabled": True,
}


def entry(**changes: Any) -> dict[str, Any]:
    """GOOD with `changes`; a change to None removes the field."""
    merged = {**GOOD, **changes}
    return {k: v for k, v in merged.items() if v is not None}


def problems(*entries: Any) -> str:
    with pytest.raises(ThresholdsError) as caught:
        parse(list(entries), "thresholds.yaml")
    return str(caught.value)


def test_the_shipped_file_is_valid_and_follows_the_guide() -> None:
    thresholds = {t.name: t for t in load(DEFAULT_THRESHOLDS)}
    assert set(BY_KEY) == {t.metric for t in thresholds.values()}, "every metric has a default"

    def rule(name: str) -> tuple[str, str, float, str]:
        t = thresholds[name]
        return (t.metric, t.condition, t.value, t.severity)

    assert rule("WsmonMessageSuccessRateLow") == ("message_success_rate", "<", 0.99, "warning")
    assert rule("WsmonMessageSuccessRateCritical") == (
        "message_success_rate",
        "<",
        0.98,
        "critical",
    )
    assert rule("WsmonAverageLatencyHigh") == ("average_latency", ">", 0.1, "warning")
    assert rule("WsmonAverageLatencyCritical") == ("average_latency", ">", 0.2, "critical")
    assert rule("WsmonPoolUtilizationHigh") == ("pool_utilization", ">", 0.8, "warning")
    assert rule("WsmonPoolUtilizationCritical") == ("pool_utilization", ">", 0.9, "critical")
    assert rule("WsmonMessageErrorRateHigh") == ("message_error_rate", ">", 0.01, "warning")
    assert rule("WsmonClientErrorRatioHigh") == ("client_error_ratio", ">", 0.05, "warning")
    assert thresholds["WsmonClientErrorRatioHigh"].enabled
    assert rule("WsmonSlowConsumersHigh") == ("slow_consumer_ratio", ">", 0.05, "warning")
    # The success warning restates the error-rate warning; only one of the twins is on.
    assert not thresholds["WsmonMessageSuccessRateLow"].enabled
    assert thresholds["WsmonMessageErrorRateHigh"].enabled


def test_a_good_entry_parses_to_a_threshold() -> None:
    (threshold,) = parse([GOOD], "t.yaml")
    assert threshold == Threshold(
        "HighErrorRate", "message_error_rate", ">", 0.01, "5m", "warning", True
    )
    assert threshold.holds(0.02)
    assert not threshold.holds(0.01)
    assert threshold.text() == "> 1%"


@pytest.mark.parametrize(
    ("bad", "expected"),
    [
        (
            entry(metric="error_rate"),
            "thresholds.yaml: entry 1 ('HighErrorRate'): metric: unknown metric 'error_rate' "
            "(did you mean 'message_error_rate'?); known: message_error_rate,",
        ),
        (
            entry(condition="=>"),
            "thresholds.yaml: entry 1 ('HighErrorRate'): condition: must be one of >, >=, <, <=, "
            "got '=>'",
        ),
        (entry(condition=[">"]), "condition: must be one of >, >=, <, <=, got ['>']"),
        (
            entry(value="1%"),
            "thresholds.yaml: entry 1 ('HighErrorRate'): value: must be a number, got '1%'",
        ),
        (
            entry(value=True),
            "entry 1 ('HighErrorRate'): value: must be a number, got True",
        ),
        (
            entry(value=80),
            "entry 1 ('HighErrorRate'): value: must be a ratio between 0 and 1 (1 % is 0.01) "
            "for message_error_rate, got 80",
        ),
        (
            entry(condition=">=", value=0),
            "entry 1 ('HighErrorRate'): value: '>= 0' always holds for message_error_rate",
        ),
        (
            entry(condition=">", value=1),
            "entry 1 ('HighErrorRate'): value: '> 1' never holds for message_error_rate",
        ),
        (
            entry(metric="average_latency", value=-1),
            "value: must be seconds, at least 0 (100 ms is 0.1) for average_latency, got -1",
        ),
        (
            entry(**{"for": "5 minutes"}),
            "entry 1 ('HighErrorRate'): for: must be a duration like 0s, 30s, 5m or 1h, "
            "got '5 minutes'",
        ),
        (entry(**{"for": 300}), "for: must be a duration like 0s, 30s, 5m or 1h, got 300"),
        (
            entry(severity="page"),
            "entry 1 ('HighErrorRate'): severity: must be one of warning, critical, got 'page'",
        ),
        (entry(enabled="yes"), "entry 1 ('HighErrorRate'): enabled: must be true or false"),
        (
            entry(metric="client_error_ratio", severity="critical"),
            "entry 1 ('HighErrorRate'): severity: must be warning for client_error_ratio: "
            "clients drive it, and one client's traffic must not page on-call",
        ),
        (entry(name="High Error Rate"), "entry 1 ('High Error Rate'): name: must be an identifier"),
        (entry(severity=None), "entry 1 ('HighErrorRate'): severity: missing"),
        (entry(name=None), "thresholds.yaml: entry 1: name: missing"),
        (
            entry(treshold=1),
            "entry 1 ('HighErrorRate'): 'treshold': unknown field; fields are name, metric,",
        ),
        (entry(valu=1), "'valu': unknown field (did you mean 'value'?)"),
        ("just text", "entry 1: entry: must be a mapping of name, metric,"),
    ],
)
def test_each_bad_field_names_entry_and_field(bad: Any, expected: str) -> None:
    assert expected in problems(bad)


def test_duplicate_name_names_both_entries() -> None:
    message = problems(GOOD, entry(name="Other", severity="critical", value=0.05), GOOD)
    assert message.splitlines() == [
        "thresholds.yaml: entry 3 ('HighErrorRate'): name: duplicate of entry 1",
    ]


def test_every_problem_is_reported_at_once() -> None:
    message = problems(entry(condition="=>"), entry(name="Other", metric="nope", value="x"))
    assert message.splitlines() == [
        "thresholds.yaml: entry 1 ('HighErrorRate'): condition: must be one of >, >=, <, <=, "
        "got '=>'",
        "thresholds.yaml: entry 2 ('Other'): metric: unknown metric 'nope'; known: "
        + ", ".join(BY_KEY),
        "thresholds.yaml: entry 2 ('Other'): value: must be a number, got 'x'",
    ]


def test_file_level_problems(tmp_path: Path) -> None:
    path = tmp_path / "thresholds.yaml"
    path.write_text("name: x\n")
    with pytest.raises(ThresholdsError, match=r"thresholds.yaml: must be a list of thresholds"):
        load(path)
    path.write_text("- [\n")
    with pytest.raises(ThresholdsError, match=r"thresholds.yaml: not valid YAML at line 2"):
        load(path)
    with pytest.raises(ThresholdsError, match=r"absent.yaml: cannot read thresholds"):
        load(tmp_path / "absent.yaml")


@pytest.mark.parametrize(
    ("text", "seconds"), [("0s", 0), ("90s", 90), ("5m", 300), ("1h30m", 5400), ("250ms", 0.25)]
)
def test_durations_follow_prometheus(text: str, seconds: float) -> None:
    assert duration_seconds(text) == seconds


@pytest.mark.parametrize("text", ["", "5", "5 m", "m5", "1.5h", "5m1h"])
def test_non_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        duration_seconds(text)


def test_a_bad_file_fails_the_build_with_entry_and_field(tmp_path: Path) -> None:
    path = tmp_path / "thresholds.yaml"
    path.write_text(yaml.safe_dump([GOOD, entry(name="Twice", condition="=>")]))
    output = tmp_path / "out"
    result = CliRunner().invoke(
        main, ["rules", "build", "--thresholds", str(path), "--output", str(output)]
    )
    assert result.exit_code == 1
    assert f"{path}: entry 2 ('Twice'): condition: must be one of >, >=, <, <=" in result.output
    assert not output.exists(), "nothing is written from a bad thresholds file"
