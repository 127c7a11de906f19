"""The dashboards' JSON: its structure, its thresholds, and that the checked-in copy is current.

Unit tests: they read dashboards/generated/ and render the Jsonnet in-process (no Grafana, no
Prometheus; test_dashboards_live.py and test_dashboards_historical.py run every query for real).
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from wsmon.alerting import build as alerting
from wsmon.catalogue import PROBE_CATALOGUE, PROBE_MODULES
from wsmon.cli import main
from wsmon.dashboards import build
from wsmon.exporter import selftest
from wsmon.thresholds import DEFAULT_THRESHOLDS, Threshold, load

REPO = Path(__file__).resolve().parents[2]
GENERATED = REPO / "dashboards" / "generated"
DEFAULTS = load(DEFAULT_THRESHOLDS)
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# The monitoring guide's tabs, in its order: the link bar on every dashboard.
GUIDE_TABS = [
    "Overview",
    "Connections",
    "Messages",
    "Performance",
    "Historical",
    "Alerts",
    "Testing",
]
# wsmon:health:status is the service's one figure (the worst alert firing anywhere): no labels.
UNLABELLED = {"wsmon:health:status"}
# The guide's "key metrics to monitor", which the panels of its tab quote as their description.
KEY_METRICS = {
    "wsmon-overview": ["Active Connections", "Pool Utilization", "Message Statistics"],
    "wsmon-connections": ["Worker Utilization", "Total Connections", "Max Capacity"],
    "wsmon-messages": ["Message Success Rate", "Error Rates", "Message Types"],
    "wsmon-performance": [
        "Average Message Latency",
        "Maximum Message Latency",
        "Broadcast Time",
    ],
    "wsmon-historical": ["historical baselines", "Identify trends", "Track system growth"],
    "wsmon-health": ["View Alerts", "Acknowledge Alerts", "Configure Thresholds"],
    "wsmon-testing": ["Server Test", "Connection Pool Test", "Echo Test"],
}
THRESHOLD_NOTE = re.compile(r"the (\w+) alerts of thresholds\.yaml")


def dashboards_in(directory: Path) -> dict[str, dict[str, Any]]:
    return {path.name: json.loads(path.read_text()) for path in sorted(directory.glob("*.json"))}


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    """The alerting mixin's _config, as the dashboards and the rules read it."""
    return alerting.config(DEFAULTS)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """What `wsmon dashboards build` writes, as the user runs it (one render: 2-3 s)."""
    output = tmp_path_factory.mktemp("dashboards")
    result = CliRunner().invoke(main, ["dashboards", "build", "--output", str(output)])
    assert result.exit_code == 0, result.output
    return {path.name: path.read_text() for path in sorted(output.iterdir())}


@pytest.fixture(scope="module")
def dashboards() -> dict[str, dict[str, Any]]:
    return dashboards_in(GENERATED)


def panels(dashboards: dict[str, dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for dashboard in dashboards.values():
        for panel in dashboard["panels"]:
            yield dashboard["uid"], panel


def exprs(panel: dict[str, Any]) -> list[str]:
    return [str(target["expr"]) for target in panel.get("targets", [])]


def record_indicators() -> dict[str, str]:
    """Recording rule -> indicator key, from the alerts that judge it (generated rules.yaml)."""
    rules = yaml.safe_load((REPO / "alerting" / "generated" / alerting.RULES).read_text())
    return {
        rule["expr"].split()[0]: rule["labels"]["indicator"]
        for group in rules["groups"]
        for rule in group["rules"]
        if "alert" in rule and "indicator" in rule.get("labels", {})
    }


def alert_values(thresholds: tuple[Threshold, ...], key: str) -> list[float]:
    return sorted({t.value for t in thresholds if t.metric == key and t.enabled})


def step_values(panel: dict[str, Any]) -> list[float]:
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    return [step["value"] for step in steps if step["value"] is not None]


def panel_titled(dashboard: dict[str, Any], title: str) -> dict[str, Any]:
    (found,) = [p for p in dashboard["panels"] if p["title"] == title]
    return found


# -- the build -----------------------------------------------------------------------------------


def test_checked_in_output_is_what_make_dashboards_builds(rendered: dict[str, str]) -> None:
    stale = build.stale(rendered, GENERATED)
    assert stale == [], f"dashboards/generated is stale ({', '.join(stale)}): run `make dashboards`"
    assert sorted(rendered) == sorted(p.name for p in GENERATED.glob("*.json"))


def test_a_copy_edited_afterwards_is_out_of_date_file_by_file(
    tmp_path: Path, rendered: dict[str, str]
) -> None:
    """(That the command reproduces the checked-in files is the test above; how `--check`
    reports staleness is the rules' and the dashboards' one `run_build`, tested with `wsmon rules
    build`.)"""
    build.write(rendered, tmp_path)
    assert build.stale(rendered, tmp_path) == []
    stale = tmp_path / "wsmon-messages.json"
    stale.write_text(stale.read_text().replace("Message success rate", "Success"))
    assert build.stale(rendered, tmp_path) == ["wsmon-messages.json"]


def test_the_thresholds_file_and_the_link_options_shape_the_build(tmp_path: Path) -> None:
    """One build (each costs 2 s): a changed threshold moves the panel's step and its description
    (on the Connections and the Testing dashboards), and the link options set the Alerts
    dashboard's links."""
    edited = tmp_path / "thresholds.yaml"
    text = Path(str(DEFAULT_THRESHOLDS)).read_text()
    for entry, old, new in (
        ("- name: WsmonPoolUtilizationHigh\n  metric: pool_utilization\n", "0.8", "0.75"),
        ("- name: WsmonProbeFailing\n  metric: probe_failure\n", "0.2", "0.25"),
    ):
        before = entry + f'  condition: ">"\n  value: {old}\n'
        assert before in text
        text = text.replace(before, entry + f'  condition: ">"\n  value: {new}\n')
    edited.write_text(text)
    out = tmp_path / "out"
    argv = [
        *("dashboards", "build", "--thresholds", str(edited), "--output", str(out)),
        *("--runbook-url", "https://wiki.example.com/wsmon/runbooks/"),
        *("--dashboard-url", "https://grafana.example.com"),
        *("--alertmanager-url", "https://am.example.com"),
    ]
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == 0, result.output
    built = dashboards_in(out)
    pool = panel_titled(built["wsmon-connections.json"], "Pool utilisation by instance")
    assert step_values(pool) == [0.75, 0.9]
    assert "WsmonPoolUtilizationHigh > 75% warning" in pool["description"]
    for title in ("Failed runs (5m)", "Share of failed runs"):
        probes = panel_titled(built["wsmon-testing.json"], title)
        assert step_values(probes) == [0.25, 0.5], title
        assert "WsmonProbeFailing > 25% warning" in probes["description"], title
    alerts = built["wsmon-health.json"]
    links = panel_titled(alerts, "Silences and runbooks")["options"]["content"]
    assert "(https://am.example.com/#/silences)" in links
    assert "(https://grafana.example.com/alerting/silences)" in links
    assert "[Runbooks](https://wiki.example.com/wsmon/runbooks)" in links
    table = panel_titled(alerts, "Alert thresholds")["options"]["content"]
    runbook = "https://wiki.example.com/wsmon/runbooks#wsmoninstancedown"
    assert f"[WsmonInstanceDown]({runbook})" in table


def test_a_link_option_that_is_not_a_url_is_refused(tmp_path: Path) -> None:
    argv = ["dashboards", "build", "--output", str(tmp_path), "--alertmanager-url", "am:9093"]
    bad = CliRunner().invoke(main, argv)
    assert bad.exit_code == 2
    assert "must be an http:// or https:// URL" in bad.output
    assert not list(tmp_path.iterdir())


def test_a_bad_thresholds_file_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "thresholds.yaml"
    bad.write_text("- name: X\n")
    result = CliRunner().invoke(main, ["dashboards", "build", "--thresholds", str(bad), "--check"])
    assert result.exit_code == 1
    assert "entry 1 ('X'): metric: missing" in result.output


# -- the dashboards ------------------------------------------------------------------------------


def test_one_dashboard_per_tab_of_the_guide(
    dashboards: dict[str, dict[str, Any]], config: dict[str, Any]
) -> None:
    tabs = {tab["uid"]: tab["title"] for tab in config["dashboardTabs"]}
    assert list(tabs.values()) == GUIDE_TABS
    built = {d["uid"]: d for d in dashboards.values()}
    # Each exists as <uid>.json, titled after its tab.
    assert set(built) == set(tabs)
    for name, dashboard in dashboards.items():
        assert name == f"{dashboard['uid']}.json"
        assert dashboard["title"] == f"wsmon / {tabs[dashboard['uid']]}"
        assert dashboard["tags"] == ["wsmon"]
        assert dashboard["schemaVersion"] >= 39
        assert dashboard["description"]


def test_every_uid_the_alerts_link_to_exists(
    dashboards: dict[str, dict[str, Any]], config: dict[str, Any]
) -> None:
    uids = {d["uid"] for d in dashboards.values()}
    assert set(config["dashboards"].values()) <= uids
    # ... and the links the alert emails carry, as generated.
    rules = (REPO / "alerting" / "generated" / alerting.RULES).read_text()
    linked = set(re.findall(r"/d/([\w-]+)\?", rules))
    assert linked
    assert linked <= uids


def test_uids_are_unique_and_panel_ids_unique_per_dashboard(
    dashboards: dict[str, dict[str, Any]],
) -> None:
    uids = [d["uid"] for d in dashboards.values()]
    assert len(uids) == len(set(uids))
    for dashboard in dashboards.values():
        ids = [p["id"] for p in dashboard["panels"]]
        assert len(ids) == len(set(ids)), dashboard["uid"]
        assert all(isinstance(i, int) and i > 0 for i in ids)


def test_the_link_bar_is_the_tab_bar_on_every_dashboard(
    dashboards: dict[str, dict[str, Any]], config: dict[str, Any]
) -> None:
    bars = [d["links"] for d in dashboards.values()]
    assert all(bar == bars[0] for bar in bars)
    assert [link["title"] for link in bars[0]] == GUIDE_TABS
    assert [link["url"] for link in bars[0]] == [f"/d/{t['uid']}" for t in config["dashboardTabs"]]
    for link in bars[0]:
        assert (link["type"], link["keepTime"], link["includeVars"]) == ("link", True, True)


def test_the_variables(dashboards: dict[str, dict[str, Any]]) -> None:
    for dashboard in dashboards.values():
        variables = {v["name"]: v for v in dashboard["templating"]["list"]}
        assert list(variables) == ["datasource", "job", "instance"]
        assert (variables["datasource"]["type"], variables["datasource"]["query"]) == (
            "datasource",
            "prometheus",
        )
        job, instance = variables["job"], variables["instance"]
        assert job["query"] == "label_values(wsmon_build_info, job)"
        assert (job["current"]["value"], job["multi"]) == ("wsmon", False)
        assert instance["query"] == 'label_values(wsmon_build_info{job="$job"}, instance)'
        assert (instance["multi"], instance["includeAll"], instance["allValue"]) == (
            True,
            True,
            ".*",
        )
        for variable in (job, instance):
            assert variable["datasource"] == DATASOURCE


def test_every_panel_reads_the_datasource_variable_and_is_described(
    dashboards: dict[str, dict[str, Any]],
) -> None:
    for uid, panel in panels(dashboards):
        where = f"{uid} / {panel['title']}"
        assert panel["description"].strip(), where
        if panel["type"] == "text":
            assert "targets" not in panel, where
            continue
        assert panel["targets"], where
        assert panel["datasource"] == DATASOURCE, where
        for target in panel["targets"]:
            assert target["datasource"] == DATASOURCE, where
        assert panel["fieldConfig"]["defaults"]["unit"], f"{where}: no unit"
        ref_ids = [t["refId"] for t in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), where


def test_the_panels_quote_the_guides_key_metrics(dashboards: dict[str, dict[str, Any]]) -> None:
    for dashboard in dashboards.values():
        text = " ".join(p["description"] for p in dashboard["panels"])
        for phrase in KEY_METRICS[dashboard["uid"]]:
            assert phrase in text, f"{dashboard['uid']}: {phrase!r}"


def test_no_panels_overlap(dashboards: dict[str, dict[str, Any]]) -> None:
    for dashboard in dashboards.values():
        cells: dict[tuple[int, int], str] = {}
        for panel in dashboard["panels"]:
            pos = panel["gridPos"]
            assert min(pos["x"], pos["w"] - 1, pos["h"] - 1) >= 0, panel["title"]
            assert pos["x"] + pos["w"] <= 24, f"{dashboard['uid']} / {panel['title']}: too wide"
            for cell in itertools.product(
                range(pos["x"], pos["x"] + pos["w"]), range(pos["y"], pos["y"] + pos["h"])
            ):
                other = cells.setdefault(cell, panel["title"])
                assert other == panel["title"], f"{dashboard['uid']}: {other} / {panel['title']}"


# A series selector: a metric name, optionally followed by its label matchers.
SELECTOR = re.compile(r"(?<![\w:$])([A-Za-z_:][\w:]*)\s*(\{[^}]*\})?")
KEYWORDS = {"offset", "or", "and", "unless", "bool"}


def selectors(expr: str) -> Iterator[tuple[str, str]]:
    """(metric, matchers) of every series selector of a PromQL expression."""
    unquoted = re.sub(r'"[^"]*"', '""', expr)
    unquoted = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", " ", unquoted)  # label lists
    for match in SELECTOR.finditer(unquoted):
        name, matchers = match.group(1), match.group(2) or ""
        following = unquoted[match.end() :].lstrip()
        if name in KEYWORDS or (following.startswith("(") and not matchers):
            continue  # a function, an aggregation or a keyword
        yield name, re.sub(r'""', "", matchers)


def test_every_wsmon_query_selects_the_job_and_instances(
    dashboards: dict[str, dict[str, Any]], config: dict[str, Any]
) -> None:
    # The probe job's own `up` (the Testing dashboard) keeps that job's name, not $job; its
    # instance is the wsmon address it scrapes, so it still takes the selected instances.
    probe_scrapes = f'job="{config["deploy"]["probeJob"]}", instance=~"$instance"'
    for uid, panel in panels(dashboards):
        for target in panel.get("targets", []):
            expr = target["expr"]
            for name, matchers in selectors(expr):
                if name in UNLABELLED or name.startswith("alertmanager_"):
                    continue
                allowed = name.startswith(("wsmon", "ALERTS", "scrape_")) or name == "up"
                assert allowed, f"{uid}: {name} in {expr}"
                where = f"{uid} / {panel['title']}: {name} in {expr}"
                # The quotes were blanked out by `selectors`: the raw matchers are checked below.
                assert "job=" in matchers, where
                assert "instance=~" in matchers, where
            for name, matchers in re.findall(r"([\w:]+)\{([^}]*)\}", expr):
                if name.startswith(("wsmon", "ALERTS", "scrape_")):
                    assert 'job="$job"' in matchers, f"{uid}: {expr}"
                    assert 'instance=~"$instance"' in matchers, f"{uid}: {expr}"
                elif name == "up":
                    assert matchers == probe_scrapes, f"{uid}: {expr}"


def test_the_selector_parser_sees_every_series() -> None:
    expr = (
        'sum by (le) (rate(wsmon_a_bucket{job="$job", instance=~"$instance"}[$__rate_interval]))'
        " / wsmon:b:ratio or vector(0)"
    )
    found = list(selectors(expr))
    assert [name for name, _ in found] == ["wsmon_a_bucket", "wsmon:b:ratio"]
    assert found[1][1] == ""


def test_rates_use_the_rate_interval(dashboards: dict[str, dict[str, Any]]) -> None:
    for uid, panel in panels(dashboards):
        for target in panel.get("targets", []):
            for window in re.findall(r"\brate\([^\[]*\[([^\]]+)\]", target["expr"]):
                # A per-day point (1d step) takes the alerts' window inside its day instead:
                # a day-long $__rate_interval would average the day's peak away.
                daily = target.get("interval") == "1d" and window == "5m"
                assert window == "$__rate_interval" or daily, f"{uid}: {target['expr']}"


def test_the_historical_dashboard_reads_raw_series_over_30_days(
    dashboards: dict[str, dict[str, Any]],
) -> None:
    historical = dashboards["wsmon-historical.json"]
    assert historical["time"] == {"from": "now-30d", "to": "now"}
    queries = [e for p in historical["panels"] for e in exprs(p)]
    assert [q for q in queries if "wsmon:" in q or "ALERTS" in q] == []
    assert any("offset 1w" in q for q in queries)
    assert any("predict_linear" in q for q in queries)
    assert any(
        t.get("interval") == "1d" for p in historical["panels"] for t in p.get("targets", [])
    )
    text = " ".join(p["options"]["content"] for p in historical["panels"] if p["type"] == "text")
    # The export note shows the command as it runs, and where the rest is explained.
    for words in ("wsmon export --prometheus", "--since 30d", "wsmon export --help"):
        assert words in text, words


# -- thresholds ----------------------------------------------------------------------------------


def test_threshold_steps_are_the_alerts_values(dashboards: dict[str, dict[str, Any]]) -> None:
    records = record_indicators()
    shown: set[str] = set()
    for uid, panel in panels(dashboards):
        where = f"{uid} / {panel['title']}"
        notes = THRESHOLD_NOTE.findall(panel["description"])
        judged = {key for e in exprs(panel) for record, key in records.items() if record in e}
        # A panel of an indicator's recording rule draws that indicator's alert thresholds.
        assert judged <= set(notes), f"{where}: shows {judged} without their thresholds"
        assert len(notes) <= 1, where
        for key in notes:
            shown.add(key)
            assert step_values(panel) == alert_values(DEFAULTS, key), where
            for t in DEFAULTS:
                if t.metric == key and t.enabled:
                    assert (
                        f"{t.name} {t.condition} {t.indicator.display(t.value)}"
                        in panel["description"]
                    ), where
            if panel["type"] == "timeseries":
                style = panel["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]
                assert style["mode"] != "off", where
    # Every indicator the dashboards can show has its thresholds on at least one panel.
    assert shown >= set(records.values()) - {"slow_consumer_ratio", "instance_down"}


def colours(panel: dict[str, Any]) -> list[tuple[float | None, str]]:
    steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
    return [(step["value"], step["color"]) for step in steps]


def test_threshold_colours_follow_the_severities(dashboards: dict[str, dict[str, Any]]) -> None:
    connections = dashboards["wsmon-connections.json"]
    messages = dashboards["wsmon-messages.json"]
    # Greater-than alerts turn the colour at their value: warning yellow, critical red.
    assert colours(panel_titled(connections, "Pool utilisation by instance")) == [
        (None, "green"),
        (0.8, "yellow"),
        (0.9, "red"),
    ]
    # A less-than alert is red below its value; the disabled 0.99 warning draws nothing.
    assert colours(panel_titled(messages, "Message success rate by instance")) == [
        (None, "red"),
        (0.98, "green"),
    ]


def test_the_health_badge(dashboards: dict[str, dict[str, Any]]) -> None:
    badge = panel_titled(dashboards["wsmon-overview.json"], "Health")
    assert badge["type"] == "stat"
    assert exprs(badge) == ["wsmon:health:status"]
    assert badge["options"]["colorMode"] == "background"
    (mapping,) = badge["fieldConfig"]["defaults"]["mappings"]
    assert {k: (v["text"], v["color"]) for k, v in mapping["options"].items()} == {
        "0": ("Healthy", "green"),
        "1": ("Degraded", "yellow"),
        "2": ("Unhealthy", "red"),
    }


def test_client_errors_and_service_failures_are_apart(
    dashboards: dict[str, dict[str, Any]],
) -> None:
    overview = dashboards["wsmon-overview.json"]
    assert "wsmon_client_errors_total" in exprs(panel_titled(overview, "Client errors"))[0]
    failures = exprs(panel_titled(overview, "Service failures"))[0]
    assert "wsmon_message_failures_total" in failures
    assert "wsmon_client_errors_total" not in failures


def test_the_alerts_dashboard_lists_every_threshold(dashboards: dict[str, dict[str, Any]]) -> None:
    alerts = dashboards["wsmon-health.json"]
    table = panel_titled(alerts, "Alert thresholds")["options"]["content"]
    rows = [line for line in table.splitlines() if line.startswith("| [Wsmon")]
    assert len(rows) == len(DEFAULTS)
    for t, row in zip(DEFAULTS, rows, strict=True):
        cells = [cell.strip() for cell in row.strip("|").split("|")]
        runbook = f"http://${{instance}}/runbooks#{t.name.lower()}"
        assert cells[0] == f"[{t.name}]({runbook})"
        assert f"`{t.metric}`" in cells[1]
        assert cells[2:] == [
            f"`{t.condition}`",
            t.indicator.display(t.value),
            t.for_,
            t.severity,
            "yes" if t.enabled else "no",
        ]
    links = panel_titled(alerts, "Silences and runbooks")["options"]["content"]
    assert "http://localhost:9093/#/silences" in links
    assert "http://localhost:3000/alerting/silences" in links
    assert "[Runbooks](http://${instance}/runbooks)" in links
    queries = " ".join(e for p in alerts["panels"] for e in exprs(p))
    for series in (
        'alertmanager_alerts{job="alertmanager", state="suppressed"}',
        'alertmanager_silences{job="alertmanager", state="active"}',
        'alertmanager_notifications_total{job="alertmanager", integration="email"}',
        'alertmanager_notifications_failed_total{job="alertmanager", integration="email"}',
        'ALERTS{alertstate="firing"',
    ):
        assert series in queries, series


def test_the_testing_dashboard(
    dashboards: dict[str, dict[str, Any]], config: dict[str, Any]
) -> None:
    testing = dashboards["wsmon-testing.json"]
    # The probe alerts' dashboard link opens it.
    assert config["dashboards"]["probe_failure"] == "wsmon-testing"
    passed_failed = {"1": ("PASSED", "green"), "0": ("FAILED", "red")}
    for module in PROBE_MODULES:
        last = panel_titled(testing, f"{module.capitalize()} test")
        assert (last["type"], last["options"]["colorMode"]) == ("stat", "background")
        assert exprs(last) == [
            f'min (wsmon_probe_success{{job="$job", instance=~"$instance", probe="{module}"}})'
        ]
        (mapping,) = last["fieldConfig"]["defaults"]["mappings"]
        assert {k: (v["text"], v["color"]) for k, v in mapping["options"].items()} == passed_failed
    # Every series a /probe answer can hold is on a panel, the probe job's own `up` too.
    queries = " ".join(e for p in testing["panels"] for e in exprs(p))
    for spec in PROBE_CATALOGUE:
        assert f"{spec.name}{{" in queries, spec.name
    assert f'up{{job="{config["deploy"]["probeJob"]}", instance=~"$instance"}}' in queries
    # The pool check's pass line is the one /probe runs it with.
    spread = panel_titled(testing, "Pool test: spread")
    assert step_values(spread) == [selftest.DEFAULT_MAX_SPREAD]
    text = panel_titled(testing, "Run the tests")["options"]["content"]
    assert "[Run the tests in the browser](http://${instance}/testing)" in text
    assert "wsmon test server|pool|echo" in text
