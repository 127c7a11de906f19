"""The deploy bundle as checked in: reproducible, up to date, its copies the very files `make rules`
and `make dashboards` write, and its parts agreeing with each other and with the config."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from bundle import DEPLOY, config, exec_start, unit
from click.testing import CliRunner
from support.stack import REPO

from wsmon.catalogue import PROBE_MODULES
from wsmon.cli import main
from wsmon.deploy import build
from wsmon.exporter.config import Settings, read_file
from wsmon.thresholds import DEFAULT_THRESHOLDS, load

GENERATED_RULES = REPO / "alerting" / "generated"
GENERATED_DASHBOARDS = REPO / "dashboards" / "generated"
UNITS = DEPLOY / "systemd"


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """What `wsmon deploy build` writes, as the user runs it (one render of the bundle: 3 s)."""
    output = tmp_path_factory.mktemp("deploy")
    written = CliRunner().invoke(main, ["deploy", "build", "--output", str(output)])
    assert written.exit_code == 0, written.output
    return {
        str(path.relative_to(output)): path.read_text()
        for path in sorted(output.rglob("*"))
        if path.is_file()
    }


def test_the_checked_in_bundle_is_up_to_date(rendered: dict[str, str]) -> None:
    assert build.stale(rendered, DEPLOY) == [], "deploy/ is stale: run `make deploy`"
    # Nothing checked in that the build no longer writes (the bundle's own sources aside).
    generated = {
        str(path.relative_to(DEPLOY))
        for path in DEPLOY.rglob("*")
        if path.is_file()
        and "__pycache__" not in path.parts
        and path.suffix not in (".jsonnet", ".libsonnet", ".py")
    }
    assert generated == set(rendered), "deploy/ holds files the build does not write"


def test_a_stale_copy_is_stale_in_exactly_the_files_that_differ(
    tmp_path: Path, rendered: dict[str, str]
) -> None:
    """An edited copy (one file changed, one deleted) is stale in exactly those two. (That the
    build reproduces the checked-in bundle is the test above; how `--check` reports staleness is
    the one `run_build` of every build, tested with `wsmon rules build`.)"""
    copy = tmp_path / "deploy"
    shutil.copytree(DEPLOY, copy)
    edited = copy / "systemd" / "wsmon-prometheus.service"
    edited.write_text(edited.read_text().replace("retention.time=30d", "retention.time=15d"))
    (copy / "grafana" / "dashboards" / "wsmon-overview.json").unlink()
    assert sorted(build.stale(rendered, copy)) == [
        "grafana/dashboards/wsmon-overview.json",
        "systemd/wsmon-prometheus.service",
    ]


def test_copies_are_byte_for_byte_the_alerting_and_dashboards_builds() -> None:
    pairs = {
        DEPLOY / "prometheus" / "rules.yaml": GENERATED_RULES / "rules.yaml",
        DEPLOY / "alertmanager" / "alertmanager.yml": GENERATED_RULES / "alertmanager.yml",
        DEPLOY / "alertmanager" / "wsmon.tmpl": GENERATED_RULES / "wsmon.tmpl",
    }
    dashboards = sorted(p.name for p in GENERATED_DASHBOARDS.glob("*.json"))
    assert dashboards, "no generated dashboards"
    assert sorted(p.name for p in (DEPLOY / "grafana" / "dashboards").glob("*.json")) == dashboards
    for name in dashboards:
        pairs[DEPLOY / "grafana" / "dashboards" / name] = GENERATED_DASHBOARDS / name
    for copy, source in pairs.items():
        assert copy.read_bytes() == source.read_bytes(), f"{copy} differs from {source}"


def test_prometheus_scrapes_the_job_the_rules_select_and_sends_to_alertmanager() -> None:
    c = config()
    d = c["deploy"]
    prometheus = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    jobs = {
        job["job_name"]: job["static_configs"][0]["targets"] for job in prometheus["scrape_configs"]
    }
    host = d["host"]
    # wsmon is scraped on its metrics_listen address, not the public port.
    assert jobs == {
        "wsmon": [f"{host}:{d['ports']['wsmonMetrics']}"],
        "alertmanager": [f"{host}:{d['ports']['alertmanager']}"],
        "prometheus": [f"{host}:{d['ports']['prometheus']}"],
        "wsmon-probe": [f"{host}:{d['ports']['wsmonMetrics']}"],
    }
    # The probe job asks wsmon's /probe once per module, and its series keep wsmon's job.
    (probe,) = [j for j in prometheus["scrape_configs"] if j["job_name"] == d["probeJob"]]
    assert probe["metrics_path"] == "/probe"
    assert [g["labels"]["module"] for g in probe["static_configs"]] == list(PROBE_MODULES)
    assert d["probeModules"] == list(PROBE_MODULES)
    assert {"target_label": "job", "replacement": "wsmon"} in probe["metric_relabel_configs"]
    # Both wsmon jobs send Prometheus' own basic_auth, with the password file beside
    # prometheus.yml, which ships as a placeholder (refused, 401, until replaced).
    wsmon_jobs = [j for j in prometheus["scrape_configs"] if j["job_name"].startswith("wsmon")]
    for job in wsmon_jobs:
        assert job["basic_auth"] == {"username": "prometheus", "password_file": "wsmon.password"}
    placeholder = (DEPLOY / "prometheus" / "wsmon.password").read_text()
    assert placeholder.startswith("REPLACE-THIS-LINE-WITH-THE-PASSWORD")
    assert c["wsmonSelector"] == 'job="wsmon"'
    assert c["alertmanagerSelector"] == 'job="alertmanager"'
    rules = (DEPLOY / "prometheus" / "rules.yaml").read_text()
    assert 'up{job="wsmon"}' in rules, "instance_down reads another job than the bundle scrapes"
    assert prometheus["global"]["scrape_interval"] == d["scrapeInterval"]
    # Relative to prometheus.yml: the rules are found in the tree and where it is installed.
    assert prometheus["rule_files"] == ["rules.yaml"]
    (alertmanagers,) = prometheus["alerting"]["alertmanagers"]
    am_target = f"{host}:{d['ports']['alertmanager']}"
    assert alertmanagers["static_configs"] == [{"targets": [am_target]}]
    # The dashboards' links to Alertmanager go where Prometheus sends the alerts.
    assert c["alertmanagerUrl"] == f"http://{am_target}"


def test_provisioning_names_the_datasource_uid_of_the_dashboards_and_their_folder() -> None:
    c = config()
    sources = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "datasources" / "wsmon.yaml").read_text()
    )
    by_type = {source["type"]: source for source in sources["datasources"]}
    assert set(by_type) == {"prometheus", "alertmanager"}
    uids = set()
    for path in (DEPLOY / "grafana" / "dashboards").glob("*.json"):
        variables = json.loads(path.read_text())["templating"]["list"]
        (variable,) = [v for v in variables if v["name"] == "datasource"]
        uids.add(variable["current"]["value"])
    assert uids == {by_type["prometheus"]["uid"]} == {c["datasource"]}
    assert by_type["prometheus"]["url"] == f"http://{c['deploy']['host']}:9090"
    assert by_type["prometheus"]["jsonData"]["timeInterval"] == c["deploy"]["scrapeInterval"]
    assert by_type["alertmanager"]["url"] == c["alertmanagerUrl"]
    providers = yaml.safe_load(
        (DEPLOY / "grafana" / "provisioning" / "dashboards" / "wsmon.yaml").read_text()
    )
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == c["deploy"]["paths"]["grafanaDashboards"]


def test_prometheus_unit_keeps_the_configured_retention() -> None:
    c = config()
    argv = exec_start(UNITS / "wsmon-prometheus.service")
    assert argv[0] == c["deploy"]["paths"]["prometheus"]
    assert c["deploy"]["retention"] == "30d"  # the design card's 30 days of history
    assert f"--storage.tsdb.retention.time={c['deploy']['retention']}" in argv
    assert f"--config.file={c['deploy']['paths']['prometheusConfig']}/prometheus.yml" in argv


def test_wsmon_unit_outlasts_the_drain() -> None:
    c = config()
    drain = Settings().drain_seconds
    assert c["deploy"]["drainSeconds"] == drain, "config.libsonnet's drainSeconds is not wsmon's"
    service = unit(UNITS / "wsmon.service")["Service"]
    timeout = service["TimeoutStopSec"]
    assert timeout.endswith("s")
    assert float(timeout.removesuffix("s")) > drain + 2
    assert service["KillSignal"] == "SIGTERM"
    assert service["Restart"] == "on-failure"
    assert exec_start(UNITS / "wsmon.service") == [
        c["deploy"]["paths"]["wsmon"],
        "serve",
        "--config",
        c["deploy"]["paths"]["wsmonConfig"],
    ]
    alertmanager = exec_start(UNITS / "wsmon-alertmanager.service")
    assert alertmanager[0] == c["deploy"]["paths"]["alertmanager"]
    assert (
        f"--config.file={c['deploy']['paths']['alertmanagerConfig']}/alertmanager.yml"
        in alertmanager
    )


def test_the_settings_file_is_one_wsmon_serve_reads_with_the_bundles_port_and_drain() -> None:
    c = config()
    settings = read_file(DEPLOY / "wsmon" / "wsmon.yaml")
    assert settings == {
        "host": "0.0.0.0",
        "port": c["deploy"]["ports"]["wsmon"],
        "drain_seconds": c["deploy"]["drainSeconds"],
        "thresholds_file": c["deploy"]["paths"]["wsmonThresholds"],
        # An installed server checks tokens (check_auth: a settings file that sets no way of
        # checking them does not start).
        "auth_jwt_secret_file": c["deploy"]["paths"]["wsmonJwtSecret"],
        # and serves /metrics and the health endpoints on a second address, with basic auth.
        "metrics_listen": f"{c['deploy']['host']}:{c['deploy']['ports']['wsmonMetrics']}",
        "metrics_web_config_file": c["deploy"]["paths"]["wsmonWebConfig"],
    }
    # Where the unit's --config looks: the test above reads ExecStart.
    assert c["deploy"]["paths"]["wsmonConfig"] == "/etc/wsmon/wsmon.yaml"
    # The thresholds it names are the rules' own file, comments and all, beside it; SIGHUP
    # (systemctl reload) makes an edit of it live.
    assert (DEPLOY / "wsmon" / "thresholds.yaml").read_text() == DEFAULT_THRESHOLDS.read_text()
    assert unit(UNITS / "wsmon.service")["Service"]["ExecReload"] == "/bin/kill -HUP $MAINPID"


def test_the_bundle_refuses_a_thresholds_copy_that_is_not_its_thresholds() -> None:
    thresholds = load(DEFAULT_THRESHOLDS)
    with pytest.raises(ValueError, match="does not hold the thresholds"):
        build.render(thresholds, None, "[]\n")
