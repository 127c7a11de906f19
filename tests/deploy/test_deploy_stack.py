"""`make stack` as a user runs it: `wsmon stack start --instances 2` as a process, real Prometheus,
Alertmanager, two wsmon servers with Debian's redis-server between them and a mail sink on
127.0.0.1, then `wsmon stack stop`. The tests of the started stack run in file order against one
start (it takes about 20 s), the stop last; a test alert is fired as soon as the stack is up,
because Alertmanager's group_wait (30 s) holds its mail back meanwhile. One instance (the
default) is the same plan without Redis and --broker: test_stack_parts checks its argv."""

from __future__ import annotations

import contextlib
import email
import email.policy
import json
import shutil
import socket
import subprocess
import time
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
from websockets.sync.client import ClientConnection, connect

from wsmon import stackrecord
from wsmon.catalogue import PROBE_MODULES
from wsmon.deploy import stack, supervise

pytestmark = pytest.mark.integration

PARTS = ("wsmon", "prometheus", "alertmanager", "grafana", "smtp", "redis")
SERVERS = ("wsmon", "wsmon-2")
TEST_ALERT = "WsmonStackTestAlert"


def free_ports() -> dict[str, int]:
    """A free port per part, and wsmon's such that the next one (wsmon-2's) is free too."""
    ports = {part: free_port() for part in PARTS}
    while stack.port_in_use(ports["wsmon"] + 1) or ports["wsmon"] + 1 in ports.values():
        ports["wsmon"] = free_port()
    return ports


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
    ports = free_ports()
    flags = [f"--{part}-port={port}" for part, port in ports.items()]
    result = run_stack("start", "--state-dir", str(state.root), "--instances=2", *flags)
    ports["wsmon-2"] = ports["wsmon"] + 1
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
    for part in ("wsmon", "wsmon-2", "prometheus", "alertmanager"):
        assert started.url(part) in started.output
    assert f"smtp://{HOST}:{started.ports['smtp']}" in started.output
    assert f"redis://{HOST}:{started.ports['redis']}/0" in started.output
    assert "keeps 30d of history" in started.output
    # Without a grafana-server on the PATH it says so and starts none; with one, it starts it.
    grafana = shutil.which("grafana-server") is not None
    assert ("Grafana       not started: no grafana-server on the PATH" in started.output) is (
        not grafana
    )
    programs = {r.name: " ".join(cmdline(r.pid)) for r in started.records}
    assert set(programs) == {"smtp", "redis", *SERVERS, "alertmanager", "prometheus"} | (
        {"grafana"} if grafana else set()
    )
    # In start order: the broker before the servers that connect to it.
    assert [r.name for r in started.records][:4] == ["smtp", "redis", *SERVERS]
    assert "aiosmtpd" in programs["smtp"]
    assert "redis-server" in programs["redis"]
    broker = f"--broker redis://{HOST}:{started.ports['redis']}/0"
    for server in SERVERS:
        assert "wsmon serve" in programs[server]
        assert f"--host {HOST}" in programs[server]
        assert f"--port {started.ports[server]}" in programs[server]
        assert broker in programs[server]
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
            "/".join(filter(None, (t["labels"]["job"], t["labels"].get("module"))))
            + f" {t['labels']['instance']}": t["health"]
            for t in targets
        }

    # The bundle scrapes every 15 s: each target's first scrape comes within one interval. Both
    # servers under job wsmon (the dashboards' instances), and each probed.
    servers = [f"{HOST}:{started.ports[server]}" for server in SERVERS]
    up = {f"wsmon {server}": "up" for server in servers}
    up |= {f"{part} {HOST}:{started.ports[part]}": "up" for part in ("alertmanager", "prometheus")}
    up |= {f"wsmon-probe/{module} {server}": "up" for module in PROBE_MODULES for server in servers}
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
    for server in SERVERS:
        health = get(started.url(server, "/api/health"))
        assert health["status"] == "healthy", health
        (broker,) = [check for check in health["checks"] if check["name"] == "broker"]
        assert broker["status"] == "healthy", broker
    settings = yaml.safe_load((started.state.config / "wsmon" / "wsmon.yaml").read_text())
    assert settings["port"] == started.ports["wsmon"]


@contextlib.contextmanager
def client(started: Started, server: str) -> Iterator[ClientConnection]:
    with connect(f"ws://{HOST}:{started.ports[server]}/ws", open_timeout=10) as connection:
        assert json.loads(connection.recv(timeout=10))["type"] == "welcome"
        yield connection


def frame(connection: ClientConnection, wanted: dict[str, Any], within: float = 10) -> Any:
    """The first frame holding every field of `wanted`, skipping others (pings, notices)."""
    deadline = time.monotonic() + within
    while True:
        got = json.loads(connection.recv(timeout=max(0.1, deadline - time.monotonic())))
        if wanted.items() <= got.items():
            return got


def test_a_chat_through_one_server_reaches_the_room_on_the_other_through_redis(
    started: Started,
) -> None:
    """What the broker is for: the servers share no process, only Redis."""
    with client(started, "wsmon") as alice, client(started, "wsmon-2") as bob:
        for n, member in enumerate((alice, bob)):
            member.send(json.dumps({"type": "join", "room": "stack", "id": f"join-{n}"}))
            frame(member, {"type": "ack", "id": f"join-{n}"})
        alice.send(json.dumps({"type": "chat", "room": "stack", "text": "across", "id": "c"}))
        frame(alice, {"type": "ack", "id": "c"})
        frame(bob, {"type": "chat", "room": "stack", "text": "across"})
        bob.send(json.dumps({"type": "chat", "room": "stack", "text": "and back", "id": "d"}))
        frame(alice, {"type": "chat", "room": "stack", "text": "and back"})


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
    # Each wsmon's group holds its workers too: they must go with it.
    for server in [r for r in started.records if r.name in SERVERS]:
        assert len(groups[server.pid]) > 1, groups
    stopped = run_stack("stop", "--state-dir", str(started.state.root))
    assert stopped.returncode == 0, stopped.stderr
    for name in ("Prometheus", "Alertmanager", "wsmon-2", "wsmon", "Redis", "SMTP sink"):
        assert f"stopped {name} (pid" in stopped.stdout
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
