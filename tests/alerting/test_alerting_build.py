"""The Jsonnet build: generated files are current, well formed, and pass promtool and amtool."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from support.stack import REPO, tool

from wsmon.alerting import build, promtests
from wsmon.cli import main
from wsmon.indicators import INDICATORS
from wsmon.thresholds import DEFAULT_THRESHOLDS, Threshold, load, parse

HERE = REPO / "alerting"

GENERATED = HERE / "generated"
HAND_WRITTEN_TESTS = sorted((HERE / "tests").glob("*.yaml"))
DEFAULTS = load(DEFAULT_THRESHOLDS)


def rules_of(files: dict[str, str]) -> dict[str, dict[str, Any]]:
    """Rule name (alert or record) -> rule, from a rendered rules.yaml."""
    document = yaml.safe_load(files[build.RULES])
    return {
        rule.get("alert", rule.get("record")): rule
        for group in document["groups"]
        for rule in group["rules"]
    }


@pytest.fixture(scope="module")
def files() -> dict[str, str]:
    return build.render(DEFAULTS)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, files: dict[str, str]) -> Path:
    """The current sources built into a scratch copy of alerting/, hand-written tests beside it."""
    root = tmp_path_factory.mktemp("alerting")
    build.write(files, root / "generated")
    (root / "tests").mkdir()
    for test in HAND_WRITTEN_TESTS:
        shutil.copy(test, root / "tests")
    return root


def run(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, cwd=cwd, check=False)


def test_checked_in_output_is_what_make_rules_builds(files: dict[str, str]) -> None:
    stale = build.stale(files, GENERATED)
    assert stale == [], f"alerting/generated is stale ({', '.join(stale)}): run `make rules`"
    result = CliRunner().invoke(main, ["rules", "build", "--output", str(GENERATED), "--check"])
    assert (result.exit_code, result.output.strip()) == (0, f"{GENERATED}: up to date")


def test_check_flags_a_stale_directory(tmp_path: Path, files: dict[str, str]) -> None:
    build.write(files, tmp_path)
    (tmp_path / build.RULES).write_text("# edited by hand\n")
    result = CliRunner().invoke(main, ["rules", "build", "--output", str(tmp_path), "--check"])
    assert result.exit_code == 1
    assert f"{tmp_path}: out of date: rules.yaml; run `make rules`" in result.output


def test_build_writes_every_file(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["rules", "build", "--output", str(tmp_path)])
    assert result.exit_code == 0, result.output
    names = {"rules.yaml", "alerts_test.yaml", "alertmanager.yml", "wsmon.tmpl"}
    assert {p.name for p in tmp_path.iterdir()} == names


def test_one_recording_rule_per_metric_and_the_health_rule(files: dict[str, str]) -> None:
    records = {name for name, rule in rules_of(files).items() if "record" in rule}
    assert records == {
        "wsmon:message_error_rate:ratio_rate5m",
        "wsmon:message_success_rate:ratio_rate5m",
        "wsmon:client_error_ratio:ratio_rate5m",
        "wsmon:message_latency_seconds:avg_rate5m",
        "wsmon:message_latency_seconds:p99_rate5m",
        "wsmon:pool_utilization:ratio",
        "wsmon:connection_rejection_rate:ratio_rate5m",
        "wsmon:worker_imbalance:ratio",
        "wsmon:slow_consumer_ratio:ratio_increase5m",
        "wsmon:broadcast_duration_seconds:p99_rate5m",
        "wsmon:probe_failure:ratio_avg5m",
        "wsmon:instance_down:bool",
        "wsmon:broker_down:bool",
        "wsmon:broker_loss:ratio_rate5m",
        "wsmon:broker_delay_seconds:p99_rate5m",
        "wsmon:health:status",
    }


def test_one_alert_per_enabled_threshold_with_everything_on_call_needs(
    files: dict[str, str],
) -> None:
    rules = rules_of(files)
    runbook = (HERE / "runbooks.md").read_text()
    enabled = [t for t in DEFAULTS if t.enabled]
    assert {name for name, rule in rules.items() if "alert" in rule} == {t.name for t in enabled}
    for threshold in enabled:
        rule = rules[threshold.name]
        assert rule["labels"] == {
            "severity": threshold.severity,
            "indicator": threshold.metric,
            "service": "wsmon",
        }
        assert rule["for"] == threshold.for_
        notes = rule["annotations"]
        assert set(notes) == {
            "summary",
            "description",
            "value",
            "threshold",
            "runbook_url",
            "dashboard_url",
        }
        assert "{{ $value" in notes["description"], "the description shows the value"
        assert threshold.text() in notes["description"]
        assert notes["threshold"] == threshold.text()
        # The firing server's own /runbooks page (tests/integration/test_endpoints.py checks
        # that it has an element with this id for every alert).
        assert (
            notes["runbook_url"]
            == "http://{{ $labels.instance }}/runbooks#" + threshold.name.lower()
        )
        assert f"\n## {threshold.name}\n" in runbook, f"runbooks.md lacks ## {threshold.name}"
        assert re.match(r"^http://localhost:3000/d/wsmon-[a-z]+\?", notes["dashboard_url"])


def test_runbooks_have_a_section_for_every_threshold() -> None:
    headings = re.findall(r"^## (\w+)$", (HERE / "runbooks.md").read_text(), re.MULTILINE)
    assert sorted(headings) == sorted(t.name for t in DEFAULTS)


def test_disabled_thresholds_make_no_alert_and_conditions_reach_promql() -> None:
    entries: list[Any] = yaml.safe_load(DEFAULT_THRESHOLDS.read_text())
    entries[0] |= {"enabled": False}
    entries[1] |= {"enabled": True, "condition": "<=", "value": 0.995, "for": "90s"}
    rules = rules_of(build.render(parse(entries, "t.yaml")))
    assert entries[0]["name"] not in rules
    rule = rules[entries[1]["name"]]
    assert rule["expr"] == "wsmon:message_success_rate:ratio_rate5m <= 0.995"
    assert rule["for"] == "90s"


def test_overrides_reach_names_windows_and_alertmanager() -> None:
    overrides = {
        "rateWindow": "10s",
        "alertmanager": {"groupWait": "1s", "repeatInterval": "3s"},
        "smtp": {"smarthost": "127.0.0.1:2525", "username": ""},
    }
    files = build.render(DEFAULTS, overrides)
    rules = rules_of(files)
    assert "wsmon:message_error_rate:ratio_rate10s" in rules
    assert "[10s]" in rules["wsmon:message_error_rate:ratio_rate10s"]["expr"]
    assert rules["WsmonMessageErrorRateHigh"]["expr"].startswith(
        "wsmon:message_error_rate:ratio_rate10s > "
    )
    config = yaml.safe_load(files[build.ALERTMANAGER])
    route = config["route"]
    assert (route["group_wait"], route["group_interval"], route["repeat_interval"]) == (
        "1s",
        "5m",
        "3s",
    )
    for receiver in config["receivers"]:
        (email,) = receiver["email_configs"]
        assert email["smarthost"] == "127.0.0.1:2525"
        assert "auth_username" not in email
        assert "auth_password_file" not in email
        assert email["from"] == "wsmon-alerts@example.com", "a deep merge keeps the rest"


def test_alertmanager_config_routes_groups_inhibits_and_holds_no_secret(
    files: dict[str, str],
) -> None:
    config = yaml.safe_load(files[build.ALERTMANAGER])
    route = config["route"]
    assert route["group_by"] == ["alertname", "instance"]
    assert {r["receiver"]: r["matchers"] for r in route["routes"]} == {
        "wsmon-critical": ['severity="critical"'],
        "wsmon-warning": ['severity="warning"'],
    }
    for receiver in config["receivers"]:
        (email,) = receiver["email_configs"]
        assert email["send_resolved"] is True
        assert email["auth_password_file"] == "/etc/alertmanager/smtp_password"
        assert {"to", "from", "smarthost", "auth_username"} <= set(email)
    assert "auth_password:" not in files[build.ALERTMANAGER]
    assert "smtp_auth_password:" not in files[build.ALERTMANAGER]
    twin, *families = config["inhibit_rules"]
    assert twin == {
        "source_matchers": ['severity="critical"'],
        "target_matchers": ['severity="warning"'],
        "equal": ["indicator", "instance"],
    }
    messages = 'indicator=~"message_error_rate|message_success_rate"'
    (family,) = [f for f in families if messages in f["source_matchers"]]
    assert family["equal"] == ["instance"]
    # While the broker is down (a page), its losses and lag on that instance are the outage's.
    broker = 'indicator=~"broker_down|broker_loss_ratio|broker_delay"'
    (family,) = [f for f in families if broker in f["source_matchers"]]
    assert broker in family["target_matchers"]
    assert family["equal"] == ["instance"]
    for clients in ("client_error_ratio", "slow_consumer_ratio"):
        assert clients not in str(families), f"a service critical must not mute {clients}"
    template = files[config["templates"][0]]
    for shown in ("Annotations.value", "Annotations.threshold", "runbook_url", "dashboard_url"):
        assert shown in template


def test_every_alert_has_a_firing_and_a_quiet_promtool_case(files: dict[str, str]) -> None:
    cases = yaml.safe_load(files[build.PROMTOOL_TESTS])["tests"]
    seen: dict[str, list[bool]] = {}
    for case in cases:
        if case["name"].startswith(promtests.FLOOD_CASE):
            continue
        *pending, check = case["alert_rule_test"]
        seen.setdefault(check["alertname"], []).append(bool(check["exp_alerts"]))
        assert all(not p["exp_alerts"] for p in pending), "before `for` has passed: pending"
    assert seen == {t.name: [True, False] for t in DEFAULTS if t.enabled}


def test_a_client_flood_fires_the_client_warning_and_nothing_critical(
    files: dict[str, str],
) -> None:
    """Issue 8's traffic, as a generated promtool case (test_promtool_test_rules runs it): every
    enabled alert is checked, and only the client-error warnings may fire."""
    (flood,) = [
        case
        for case in yaml.safe_load(files[build.PROMTOOL_TESTS])["tests"]
        if case["name"].startswith(promtests.FLOOD_CASE)
    ]
    expected = {check["alertname"]: bool(check["exp_alerts"]) for check in flood["alert_rule_test"]}
    enabled = {t.name: t for t in DEFAULTS if t.enabled}
    assert set(expected) == set(enabled)
    firing = {name for name, fires in expected.items() if fires}
    assert firing == {t.name for t in enabled.values() if t.metric == "client_error_ratio"}
    assert "WsmonClientErrorRatioHigh" in firing
    assert all(enabled[name].severity == "warning" for name in firing)


@pytest.mark.integration
def test_promtool_check_rules(built: Path) -> None:
    result = run(tool("promtool"), "check", "rules", str(built / "generated" / build.RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    # One recording rule per indicator, one alert per enabled threshold, and the health rule.
    rules = len(INDICATORS) + sum(t.enabled for t in DEFAULTS) + 1
    assert f"SUCCESS: {rules} rules found" in result.stdout


@pytest.mark.integration
def test_amtool_check_config(built: Path, files: dict[str, str]) -> None:
    result = run(tool("amtool"), "check-config", str(built / "generated" / build.ALERTMANAGER))
    assert result.returncode == 0, result.stdout + result.stderr
    inhibit_rules = yaml.safe_load(files[build.ALERTMANAGER])["inhibit_rules"]
    assert f"{len(inhibit_rules)} inhibit rules" in result.stdout
    assert "1 templates" in result.stdout


@pytest.mark.integration
def test_promtool_test_rules(built: Path) -> None:
    tests = [str(p) for p in sorted((built / "tests").glob("*.yaml"))]
    result = run(tool("promtool"), "test", "rules", *tests, "generated/alerts_test.yaml", cwd=built)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("SUCCESS") == len(tests) + 1


ERROR_RATE_RULE = "message_error_rate:ratio_rate5m > 0.01\n    for: 5m\n"


@pytest.mark.integration
@pytest.mark.parametrize(
    "wrong",
    [
        ERROR_RATE_RULE.replace("0.01", "0.2"),
        ERROR_RATE_RULE.replace("5m\n", "0s\n"),
    ],
    ids=["threshold", "for"],
)
def test_promtool_tests_catch_a_wrong_rule(built: Path, tmp_path: Path, wrong: str) -> None:
    """The generated cases are not a tautology: a rule that drifts from its entry fails."""
    shutil.copytree(built / "generated", tmp_path / "generated")
    rules = tmp_path / "generated" / build.RULES
    text = rules.read_text()
    assert text.count(ERROR_RATE_RULE) == 1
    rules.write_text(text.replace(ERROR_RATE_RULE, wrong))
    result = run(tool("promtool"), "test", "rules", "generated/alerts_test.yaml", cwd=tmp_path)
    assert result.returncode == 1
    assert "WsmonMessageErrorRateHigh fires at" in result.stdout + result.stderr


def test_threshold_entries_turn_into_json_for_jsonnet() -> None:
    threshold = Threshold("X", "instance_down", ">=", 1.0, "1m", "critical", True)
    assert threshold.to_json()["value"] == "1"
    assert (
        Threshold("X", "pool_utilization", ">", 0.9, "1m", "critical", True).to_json()["display"]
        == "90%"
    )


def test_link_bases_are_configurable(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        [
            "rules",
            "build",
            "--output",
            str(tmp_path),
            "--runbook-url",
            "https://wiki.example.com/wsmon/",
            "--dashboard-url",
            "https://grafana.example.com",
        ],
    )
    assert result.exit_code == 0, result.output
    rules = rules_of({build.RULES: (tmp_path / build.RULES).read_text()})
    alerts = [rule for rule in rules.values() if "alert" in rule]
    assert alerts
    for rule in alerts:
        notes = rule["annotations"]
        assert notes["runbook_url"] == f"https://wiki.example.com/wsmon#{rule['alert'].lower()}"
        assert notes["dashboard_url"].startswith("https://grafana.example.com/d/wsmon-")


def test_a_link_base_that_is_not_a_url_is_refused(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main, ["rules", "build", "--output", str(tmp_path), "--runbook-url", "wiki/runbooks"]
    )
    assert result.exit_code == 2
    assert (
        "--runbook-url': must be an http:// or https:// URL, got 'wiki/runbooks'" in result.output
    )
    assert not list(tmp_path.iterdir())
