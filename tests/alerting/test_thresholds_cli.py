"""`wsmon thresholds list | add | set | enable | disable | remove` on a copy of thresholds.yaml.

Every test works in its own directory holding alerting/thresholds.yaml (a copy of the packaged
file, comments and all) and no alerting/generated, so the commands edit the copy and rebuild
nothing unless a test asks for --rules-output. The server's side of --apply (SIGHUP re-reads the
file) is checked on a Supervisor that never starts; tests/alerting/test_thresholds_apply.py does
the whole round trip with real processes.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner, Result

from wsmon import stackrecord
from wsmon.alerting import thresholds_cli, thresholds_edit
from wsmon.cli import main
from wsmon.exporter.config import Settings
from wsmon.exporter.supervisor import Supervisor
from wsmon.thresholds import DEFAULT_THRESHOLDS, load

ORIGINAL = DEFAULT_THRESHOLDS.read_text(encoding="utf-8")
GENERATED = Path(__file__).resolve().parents[2] / "alerting" / "generated" / "alertmanager.yml"
NEW = (
    "WsmonLatencyWatch",
    *("--metric", "average_latency", "--condition", ">", "--value", "0.05"),
    *("--for", "10m", "--severity", "warning"),
)


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with alerting/thresholds.yaml: the path the commands edit by default."""
    (tmp_path / "alerting").mkdir()
    path = tmp_path / "alerting" / "thresholds.yaml"
    path.write_text(ORIGINAL, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    return path


def wsmon(*argv: str) -> Result:
    return CliRunner().invoke(main, ["thresholds", *argv])


def comments(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.lstrip().startswith("#")]


def test_list_shows_every_threshold_as_a_table_and_as_json(here: Path) -> None:
    table = wsmon("list")
    assert table.exit_code == 0, table.output
    lines = table.stdout.splitlines()
    assert lines[0].split() == [
        "NAME",
        "METRIC",
        "CONDITION",
        "VALUE",
        "FOR",
        "SEVERITY",
        "ENABLED",
    ]
    first = ["WsmonMessageErrorRateHigh", "message_error_rate", ">", "0.01", "5m", "warning"]
    assert lines[1].split() == [*first, "yes"]
    as_json = wsmon("list", "--json")
    rows = json.loads(as_json.stdout)
    assert [row["name"] for row in rows] == [t.name for t in load(DEFAULT_THRESHOLDS)]
    assert rows[1] == {
        "name": "WsmonMessageSuccessRateLow",
        "metric": "message_success_rate",
        "condition": "<",
        "value": 0.99,
        "for": "5m",
        "severity": "warning",
        "enabled": False,
    }


def test_add_appends_the_entry_and_keeps_every_comment(here: Path) -> None:
    result = wsmon("add", *NEW)
    assert result.exit_code == 0, result.output
    assert "added WsmonLatencyWatch (enabled)" in result.stdout
    assert "rules not rebuilt" in result.stdout  # no alerting/generated here
    text = here.read_text()
    assert text.startswith(ORIGINAL.rstrip("\n") + "\n\n- name: WsmonLatencyWatch\n")
    assert comments(text) == comments(ORIGINAL)
    added = load(here)[-1]
    assert (added.name, added.condition, added.value, added.for_) == (
        "WsmonLatencyWatch",
        ">",
        0.05,
        "10m",
    )
    assert '  condition: ">"\n' in text.split("WsmonLatencyWatch")[1]  # quoted like the rest


def test_add_refuses_a_duplicate_name_and_leaves_the_file_alone(here: Path) -> None:
    result = wsmon("add", "WsmonPoolUtilizationHigh", *NEW[1:])
    assert result.exit_code == 1
    assert "'WsmonPoolUtilizationHigh' exists already" in result.output
    assert "wsmon thresholds set WsmonPoolUtilizationHigh" in result.output
    assert here.read_text() == ORIGINAL


@pytest.mark.parametrize(
    ("option", "bad", "named"),
    [
        (
            "--metric",
            "average_latncy",
            "(did you mean 'average_latency'?); known: message_error_rate",
        ),
        ("--condition", "=>", "condition: must be one of >, >=, <, <=, got '=>'"),
        ("--value", "-1", "value: must be seconds, at least 0"),
        ("--for", "ten minutes", "for: must be a duration like 0s, 30s, 5m or 1h"),
    ],
)
def test_a_bad_field_gets_the_loaders_message_naming_the_valid_ones(
    here: Path, option: str, bad: str, named: str
) -> None:
    argv = list(NEW)
    argv[argv.index(option) + 1] = bad
    result = wsmon("add", *argv)
    assert result.exit_code == 1
    # Appended after every shipped entry.
    assert f"entry {len(load(DEFAULT_THRESHOLDS)) + 1} ('WsmonLatencyWatch')" in result.output
    assert named in result.output
    assert "alerting/thresholds.yaml: not changed" in result.output
    assert here.read_text() == ORIGINAL


def test_set_changes_only_the_lines_of_the_fields_given(here: Path) -> None:
    result = wsmon("set", "WsmonPoolUtilizationHigh", "--value", "0.75", "--for", "10m")
    assert result.exit_code == 0, result.output
    assert "WsmonPoolUtilizationHigh: for 10m, value 0.75" in result.stdout
    before, after = ORIGINAL.splitlines(), here.read_text().splitlines()
    changed = [(a, b) for a, b in zip(before, after, strict=True) if a != b]
    assert changed == [("  value: 0.8", "  value: 0.75"), ("  for: 5m", "  for: 10m")]


def test_set_writes_small_values_as_numbers_the_loader_reads(here: Path) -> None:
    result = wsmon("set", "WsmonAverageLatencyHigh", "--value", "1e-05")
    assert result.exit_code == 0, result.output
    assert "  value: 0.00001\n" in here.read_text()  # PyYAML reads 1e-05 as a string
    assert {t.name: t.value for t in load(here)}["WsmonAverageLatencyHigh"] == 1e-05


def test_an_unknown_name_is_refused_with_the_close_ones(here: Path) -> None:
    result = wsmon("disable", "WsmonPoolUtilisationHigh")
    assert result.exit_code == 1
    assert "no threshold named 'WsmonPoolUtilisationHigh'; did you mean" in result.output
    assert "WsmonPoolUtilizationHigh" in result.output
    nothing = wsmon("set", "WsmonPoolUtilizationHigh")
    assert nothing.exit_code == 2
    assert "nothing to change" in nothing.output
    assert here.read_text() == ORIGINAL


def test_enable_disable_and_remove(here: Path) -> None:
    assert wsmon("enable", "WsmonMessageSuccessRateLow").exit_code == 0
    assert wsmon("disable", "WsmonBroadcastSlow").exit_code == 0
    enabled = {t.name: t.enabled for t in load(here)}
    assert enabled["WsmonMessageSuccessRateLow"] is True
    assert enabled["WsmonBroadcastSlow"] is False
    # Its own comment (directly above it) goes with it; the next entry's stays.
    removed = wsmon("remove", "WsmonMessageSuccessRateLow")
    assert removed.exit_code == 0, removed.output
    text = here.read_text()
    assert "WsmonMessageSuccessRateLow" not in text
    assert "# The same signal as WsmonMessageErrorRateHigh" not in text
    assert "# Bad input, rate limits and frame violations" in text
    assert "\n\n\n" not in text
    assert len(load(here)) == len(load(DEFAULT_THRESHOLDS)) - 1


def test_remove_of_the_first_entry_keeps_the_files_header(here: Path) -> None:
    assert wsmon("remove", "WsmonMessageErrorRateHigh").exit_code == 0
    text = here.read_text()
    assert text.startswith(ORIGINAL.split("\n\n")[0])  # the header block
    assert "# The error and success rates count" not in text
    assert "\n\n# The same signal as WsmonMessageErrorRateHigh" in text


def test_without_a_file_here_it_says_which_file_to_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = wsmon("list")
    assert result.exit_code == 2
    assert "no alerting/thresholds.yaml here" in result.output
    assert "--file" in result.output


def test_the_installed_copy_is_never_edited(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    installed = tmp_path / "site-packages" / "wsmon" / "alerting" / "thresholds.yaml"
    installed.parent.mkdir(parents=True)
    installed.write_text(ORIGINAL)
    monkeypatch.setattr(thresholds_cli, "DEFAULT_THRESHOLDS", installed)
    result = wsmon("disable", "WsmonBroadcastSlow", "--file", str(installed))
    assert result.exit_code == 2
    assert "the copy installed with wsmon" in result.output
    assert installed.read_text() == ORIGINAL


def test_an_edit_rebuilds_the_rules_and_keeps_the_smtp_settings(here: Path) -> None:
    out = here.parent / "generated"
    out.mkdir()
    generated = GENERATED.read_text().replace("smtp.example.com:587", "mail.example.org:25")
    (out / "alertmanager.yml").write_text(generated)
    (out / "wsmon.tmpl").write_text((GENERATED.parent / "wsmon.tmpl").read_text())
    result = wsmon("add", *NEW, "--rules-output", str(out))
    assert result.exit_code == 0, result.output
    assert f"wrote alerts_test.yaml, rules.yaml to {out}" in result.stdout
    assert f"wrote alertmanager.yml, wsmon.tmpl to {out} (unchanged)" in result.stdout
    rules = yaml.safe_load((out / "rules.yaml").read_text())
    alerts = [r.get("alert") for g in rules["groups"] for r in g["rules"]]
    assert "WsmonLatencyWatch" in alerts
    assert "smarthost: mail.example.org:25" in (out / "alertmanager.yml").read_text()


def test_apply_needs_a_target_and_checks_what_it_signals(here: Path) -> None:
    nowhere = wsmon("disable", "WsmonBroadcastSlow", "--apply")
    assert nowhere.exit_code == 2
    assert "nothing to apply to" in nowhere.output
    assert here.read_text() == ORIGINAL
    # This test's own process is not `wsmon serve`: no SIGHUP is sent, the step fails.
    result = wsmon("disable", "WsmonBroadcastSlow", "--apply", "--wsmon-pid", str(os.getpid()))
    assert result.exit_code == 1
    assert f"wsmon: FAILED: pid {os.getpid()} is not wsmon serve" in result.output
    assert "is changed, but not everything applied (see above)" in result.output
    assert {t.name: t.enabled for t in load(here)}["WsmonBroadcastSlow"] is False


def test_the_server_rereads_its_thresholds_and_keeps_them_on_a_bad_file(
    here: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = dataclasses.replace(Settings(), thresholds_file=str(here), workers=1)
    supervisor = Supervisor(settings, load(here))
    here.write_text(thresholds_edit.add(ORIGINAL, str(here), {
        "name": "WsmonLatencyWatch", "metric": "average_latency", "condition": ">",
        "value": 0.05, "for": "10m", "severity": "warning", "enabled": True,
    }))  # fmt: skip
    assert supervisor.reload_thresholds()
    assert supervisor.health.thresholds[-1].name == "WsmonLatencyWatch"
    kept = supervisor.health.thresholds
    here.write_text(ORIGINAL.replace('condition: "<"', 'condition: "=<"', 1))
    with caplog.at_level(logging.ERROR):
        assert not supervisor.reload_thresholds()
    assert supervisor.health.thresholds is kept
    [line] = caplog.messages
    assert line.startswith("SIGHUP: thresholds not reloaded, the set in use is kept: ")
    assert f"{here}: entry 2 ('WsmonMessageSuccessRateLow'): condition: must be one of" in line


def test_a_stack_dir_gives_the_pids_urls_and_config_folders(tmp_path: Path) -> None:
    processes = [
        {"name": n, "pid": p, "started": 7} for n, p in (("wsmon", 11), ("prometheus", 12))
    ]
    (tmp_path / "stack.json").write_text(json.dumps({"processes": processes}))
    config = tmp_path / "config" / "prometheus"
    config.mkdir(parents=True)
    jobs = {"wsmon": "127.0.0.1:18080", "prometheus": "127.0.0.1:19090"}
    scrape = [{"job_name": j, "static_configs": [{"targets": [t]}]} for j, t in jobs.items()]
    (config / "prometheus.yml").write_text(yaml.safe_dump({"scrape_configs": scrape}))
    targets = thresholds_cli.Targets(prometheus_pid=99)  # an option outranks the record
    thresholds_cli.read_stack(tmp_path, targets)
    assert (targets.wsmon_pid, targets.prometheus_pid, targets.alertmanager_pid) == (11, 99, None)
    assert targets.wsmon_url == "http://127.0.0.1:18080"
    assert targets.prometheus_url == "http://127.0.0.1:19090"
    assert targets.started == {11: stackrecord.Record("wsmon", 11, 7)}
    assert targets.more_wsmon == []


def test_a_stack_of_two_instances_reloads_both(tmp_path: Path) -> None:
    """`wsmon stack start --instances 2` records wsmon and wsmon-2; both get the SIGHUP, each
    confirmed at its own URL (the wsmon job's targets, in the order of the instances)."""
    processes = [{"name": n, "pid": p, "started": 7} for n, p in (("wsmon", 11), ("wsmon-2", 13))]
    (tmp_path / "stack.json").write_text(json.dumps({"processes": processes}))
    config = tmp_path / "config" / "prometheus"
    config.mkdir(parents=True)
    scrape = [
        {"job_name": "wsmon", "static_configs": [{"targets": ["127.0.0.1:8080", "127.0.0.1:8081"]}]}
    ]
    (config / "prometheus.yml").write_text(yaml.safe_dump({"scrape_configs": scrape}))
    targets = thresholds_cli.Targets()
    thresholds_cli.read_stack(tmp_path, targets)
    assert (targets.wsmon_pid, targets.wsmon_url) == (11, "http://127.0.0.1:8080")
    assert targets.more_wsmon == [("wsmon-2", 13, "http://127.0.0.1:8081")]
    assert set(targets.started) == {11, 13}


def test_an_alertmanager_config_it_did_not_render_stops_the_edit(here: Path) -> None:
    out = here.parent / "generated"
    out.mkdir()
    (out / "alertmanager.yml").write_text("route: {receiver: team}\nreceivers: [{name: team}]\n")
    result = wsmon("disable", "WsmonBroadcastSlow", "--rules-output", str(out))
    assert result.exit_code == 1
    assert "not an Alertmanager config wsmon rendered" in result.output
    assert "nothing written" in result.output
    assert here.read_text() == ORIGINAL
    assert sorted(p.name for p in out.iterdir()) == ["alertmanager.yml"]
