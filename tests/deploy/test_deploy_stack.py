"""`make stack` as a user runs it: `wsmon stack start` as a process, real Prometheus, Alertmanager,
wsmon and mail sink on 127.0.0.1, then `wsmon stack stop`. The tests of the started stack run in
file order against one start (it takes about 10 s), the stop last; a test alert is fired as soon
as the stack is up, because Alertmanager's group_wait (30 s) holds its mail back meanwhile."""

from __future__ import annotations

import email
import email.policy
import json
import shutil
import socket
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from bundle import DEPLOY
from support.polling import wait_until
from support.processes import HOST, WSMON, cmdline, free_port
from support.stack import tool

from wsmon import stackrecord
from wsmon.catalogue import PROBE_MODULES
from wsmon.deploy import stack, supervise

pytestmark = pytest.mark.integration

PARTS = ("wsmon", "prometheus", "alertmanager", "grafana", "smtp")
TEST_ALERT = "WsmonStackTestAlert"


def run_stack(*argv: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(WSMON), "stack", *argv], capture_output=True, text=True, timeout=timeout, check=False
    )


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


@dataclass(frozen=True)
class Started:
    state: stack.State
    ports: dict[str, int]
    output: str
    records: list[stackrecord.Record]

    def url(self, part: str, path: str = "") -> str:
        return f"http://{HOST}:{self.ports[part]}{path}"


@pytest.fixture(scope="module")
def started(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Started]:
    state = stack.State(tmp_path_factory.mktemp("stack"))
    ports = {part: free_port() for part in PARTS}
    flags = [f"--{part}-port={port}" for part, port in ports.items()]
    result = run_stack("start", "--state-dir", str(state.root), *flags)
    try:
        assert result.returncode == 0, result.stdout + result.stderr
        am = f"--alertmanager.url=http://{HOST}:{ports['alertmanager']}"
        fired = subprocess.run(
            [tool("amtool"), "alert", "add", TEST_ALERT, "severity=critical", "instance=stack", am],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        assert fired.returncode == 0, fired.stderr
        yield Started(state, ports, result.stdout + result.stderr, state.read())
    finally:
        run_stack("stop", "--state-dir", str(state.root))


def test_start_prints_every_url_and_records_the_processes_it_started(started: Started) -> None:
    for part in ("wsmon", "prometheus", "alertmanager"):
        assert started.url(part) in started.output
    assert f"smtp://{HOST}:{started.ports['smtp']}" in started.output
    assert "keeps 30d of history" in started.output
    # Without a grafana-server on the PATH it says so and starts none; with one, it starts it.
    grafana = shutil.which("grafana-server") is not None
    assert ("Grafana       not started: no grafana-server on the PATH" in started.output) is (
        not grafana
    )
    programs = {r.name: " ".join(cmdline(r.pid)) for r in started.records}
    assert set(programs) == {"smtp", "wsmon", "alertmanager", "prometheus"} | (
        {"grafana"} if grafana else set()
    )
    assert "aiosmtpd" in programs["smtp"]
    assert "wsmon serve" in programs["wsmon"]
    assert f"--host {HOST}" in programs["wsmon"]
    assert "alertmanager" in programs["alertmanager"]
    assert "prometheus" in programs["prometheus"]


def test_prometheus_keeps_30_days_scrapes_every_target_and_loads_the_rules(
    started: Started,
) -> None:
    flags = get(started.url("prometheus", "/api/v1/status/flags"))["data"]
    assert flags["storage.tsdb.retention.time"] == "30d"
    assert flags["storage.tsdb.path"] == str(started.state.data.resolve() / "prometheus")

    def health() -> dict[str, str]:
        targets = get(started.url("prometheus", "/api/v1/targets"))["data"]["activeTargets"]
        return {
            "/".join(filter(None, (t["labels"]["job"], t["labels"].get("module")))): t["health"]
            for t in targets
        }

    # The bundle scrapes every 15 s: each target's first scrape comes within one interval.
    up = {"wsmon": "up", "alertmanager": "up", "prometheus": "up"}
    up |= {f"wsmon-probe/{module}": "up" for module in PROBE_MODULES}
    wait_until(health, lambda h: h == up, within=30, what="every target up", interval=0.5)
    loaded = get(started.url("prometheus", "/api/v1/rules"))["data"]["groups"]
    bundle = yaml.safe_load((DEPLOY / "prometheus" / "rules.yaml").read_text())["groups"]
    # Prometheus lists the groups by name; the file has them in its own order.
    assert sorted((g["name"], len(g["rules"])) for g in loaded) == sorted(
        (g["name"], len(g["rules"])) for g in bundle
    )
    (alertmanager,) = get(started.url("prometheus", "/api/v1/alertmanagers"))["data"][
        "activeAlertmanagers"
    ]
    assert alertmanager["url"].startswith(started.url("alertmanager"))


def test_wsmon_serves_on_loopback_from_the_bundles_settings_file(started: Started) -> None:
    health = get(started.url("wsmon", "/api/health"))
    assert health["status"] == "healthy"
    settings = yaml.safe_load((started.state.config / "wsmon" / "wsmon.yaml").read_text())
    assert settings["port"] == started.ports["wsmon"]


def test_a_fired_alert_reaches_the_mail_sink(started: Started) -> None:
    new = started.state.mail / "new"

    def subjects() -> list[str]:
        found = []
        for path in sorted(new.glob("*")) if new.is_dir() else []:
            message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            found.append(str(message["Subject"]))
        return found

    # group_wait is 30 s from when the alert was fired, at start.
    mails = wait_until(
        subjects,
        lambda s: any(TEST_ALERT in subject for subject in s),
        within=60,
        what="the test alert's mail in the sink's Maildir",
        interval=0.5,
    )
    assert any(subject.startswith("[FIRING:1]") for subject in mails), mails


def test_a_second_start_says_one_is_running_and_starts_nothing(started: Started) -> None:
    again = run_stack("start", "--state-dir", str(started.state.root))
    assert again.returncode == 1
    assert "a stack is already running" in again.stderr
    assert "make stack-stop" in again.stderr
    assert started.state.read() == started.records


def test_stop_ends_exactly_what_start_started(started: Started) -> None:
    groups = {r.pid: supervise.group_members(r.pid) for r in started.records}
    # wsmon's group holds its workers too: they must go with it.
    (wsmon,) = [r for r in started.records if r.name == "wsmon"]
    assert len(groups[wsmon.pid]) > 1, groups
    stopped = run_stack("stop", "--state-dir", str(started.state.root))
    assert stopped.returncode == 0, stopped.stderr
    for name in ("Prometheus", "Alertmanager", "wsmon", "SMTP sink"):
        assert f"stopped {name}" in stopped.stdout
    assert [pid for pgid in groups for pid in supervise.group_members(pgid)] == []
    assert not started.state.record.exists()
    # Prometheus' data stays for the next start: the history grows to 30 days.
    assert (started.state.data / "prometheus").is_dir()
    again = run_stack("stop", "--state-dir", str(started.state.root))
    assert again.returncode == 0
    assert "no stack is running" in again.stdout


def test_a_port_in_use_is_named_and_nothing_starts(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind((HOST, 0))
        holder.listen()
        port = holder.getsockname()[1]
        flags = [f"--{part}-port={free_port()}" for part in PARTS if part != "prometheus"]
        result = run_stack(
            "start", "--state-dir", str(tmp_path), f"--prometheus-port={port}", *flags
        )
    assert result.returncode == 1
    assert f"port {port} (Prometheus) is in use on {HOST}" in result.stderr
    assert "--prometheus-port" in result.stderr
    assert list(tmp_path.iterdir()) == []
