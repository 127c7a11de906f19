"""The stack's pieces that need no process: its record, ports, unit parsing and summary."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml
from bundle import DEPLOY

from wsmon import stackrecord
from wsmon.deploy import stack, supervise
from wsmon.thresholds import DEFAULT_THRESHOLDS, load


def test_the_record_round_trips_and_a_reused_pid_is_not_the_recorded_process(
    tmp_path: Path,
) -> None:
    state = stack.State(tmp_path / "state")
    assert state.read() == []
    me = stackrecord.Record("wsmon", os.getpid(), stackrecord.start_time(os.getpid()) or 0)
    impostor = stackrecord.Record("prometheus", os.getpid(), me.started + 1)
    state.write([me, impostor])
    assert state.read() == [me, impostor]
    assert me.alive()
    # Same pid, another start time: a program the kernel gave the old pid to; never signalled.
    assert not impostor.alive()
    assert stack.running(state) == [me]
    assert supervise.stop(impostor, timeout=0.1) is False
    state.record.write_text("{not json")
    with pytest.raises(stack.StackError, match="unreadable"):
        state.read()


def test_ports_come_from_the_bundle_unless_chosen_and_must_differ() -> None:
    thresholds = load(DEFAULT_THRESHOLDS)
    ports = stack.configured_ports(thresholds, {"prometheus": 19090})
    assert ports == {
        "smtp": 1025,
        "wsmon": 8080,
        "alertmanager": 9093,
        "prometheus": 19090,
        "grafana": 3000,
    }
    with pytest.raises(stack.StackError, match="Prometheus and Grafana are both given port 9093"):
        stack.configured_ports(thresholds, {"prometheus": 9093, "grafana": 9093, "alertmanager": 1})


def test_a_listening_port_is_in_use_and_a_closed_one_is_not() -> None:
    with socket.socket() as holder:
        holder.bind((stack.HOST, 0))
        holder.listen()
        port = holder.getsockname()[1]
        assert stack.port_in_use(port)
    assert not stack.port_in_use(port)


def test_the_units_exec_start_is_read_as_systemd_joins_it() -> None:
    argv = stack.exec_start((DEPLOY / "systemd" / "wsmon-prometheus.service").read_text())
    assert argv[0] == "/usr/bin/prometheus"
    assert "--storage.tsdb.retention.time=30d" in argv
    with pytest.raises(stack.StackError):
        stack.exec_start("[Service]\nUser=nobody\n")


def test_the_summary_names_every_url_the_retention_and_a_missing_grafana(tmp_path: Path) -> None:
    state = stack.State(tmp_path)
    parts = [
        stack.Part("smtp", ("sink",), 1025, None),
        stack.Part("prometheus", ("p", "--storage.tsdb.retention.time=30d"), 9090, "/-/ready"),
    ]
    lines = list(stack.describe(parts, state))
    assert lines[0].split()[:3] == ["SMTP", "sink", "smtp://127.0.0.1:1025"]
    assert f"keeps 30d of history in {tmp_path / 'data' / 'prometheus'}" in lines[1]
    assert "no grafana-server on the PATH" in lines[2]


def test_more_instances_take_the_next_ports_and_a_redis_beside_debian_s_own() -> None:
    thresholds = load(DEFAULT_THRESHOLDS)
    assert stack.instance_names(3) == ["wsmon", "wsmon-2", "wsmon-3"]
    # One server: no Redis, as before the broker.
    assert "redis" not in stack.configured_ports(thresholds, {"redis": 7000})
    ports = stack.configured_ports(thresholds, {"wsmon": 18080}, instances=2)
    # Not the bundle's 6379: Debian's redis-server package starts a service there.
    assert ports == {
        "smtp": 1025,
        "redis": 6380,
        "wsmon": 18080,
        "wsmon-2": 18081,
        "alertmanager": 9093,
        "prometheus": 9090,
        "grafana": 3000,
    }
    assert stack.port_option("wsmon-2") == "--wsmon-port"
    assert stack.port_option("redis") == "--redis-port"
    with pytest.raises(stack.StackError, match="wsmon-2 and Prometheus are both given port 9090"):
        stack.configured_ports(thresholds, {"wsmon": 9089}, instances=2)
    with pytest.raises(stack.StackError, match="wsmon-2 would take port 65536"):
        stack.configured_ports(thresholds, {"wsmon": 65535}, instances=2)
    with pytest.raises(stack.StackError, match="from 1 to 8"):
        stack.configured_ports(thresholds, {}, instances=9)


def test_a_missing_redis_server_is_named_with_the_package_that_brings_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(stack.shutil, "which", lambda name: None)
    with pytest.raises(stack.StackError, match=r"redis-server is not installed: `make tools`"):
        stack.find_binary("redis")


def test_the_plan_starts_redis_before_the_servers_each_with_the_broker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The argv `start` runs, without running them: two servers on their ports with --broker,
    Redis on loopback writing nothing; Prometheus scrapes both servers, probes included. One
    server is started as before the broker: no Redis, no --broker."""
    thresholds = load(DEFAULT_THRESHOLDS)
    text = DEFAULT_THRESHOLDS.read_text()
    ports = stack.configured_ports(thresholds, {"wsmon": 18080, "redis": 16380}, instances=2)
    state = stack.State(tmp_path / "two")
    rendered: list[tuple[dict[str, Any], dict[str, str]]] = []
    render = stack.build.render

    def recording(*args: Any) -> dict[str, str]:
        files = render(*args) if not rendered else rendered[0][1]  # one render (seconds) only
        rendered.append((args[1], files))
        return files

    monkeypatch.setattr(stack.build, "render", recording)
    parts = {part.name: part for part in stack.plan(state, ports, thresholds, text)}
    assert list(parts)[:4] == ["smtp", "redis", "wsmon", "wsmon-2"]
    redis = parts["redis"]
    assert redis.url == "redis://127.0.0.1:16380/0"
    assert redis.argv[1:] == (
        *("--bind", "127.0.0.1", "--port", "16380"),
        *("--save", "", "--appendonly", "no", "--dir", str(state.data.resolve() / "redis")),
    )
    for name, port in (("wsmon", "18080"), ("wsmon-2", "18081")):
        argv = parts[name].argv
        assert argv[argv.index("--port") + 1] == port
        assert argv[argv.index("--broker") + 1] == "redis://127.0.0.1:16380/0"
        assert "--no-auth" in argv
    prometheus = yaml.safe_load((state.config / "prometheus" / "prometheus.yml").read_text())
    targets = {
        job["job_name"]: [t for group in job["static_configs"] for t in group["targets"]]
        for job in prometheus["scrape_configs"]
    }
    servers = ["127.0.0.1:18080", "127.0.0.1:18081"]
    assert targets["wsmon"] == servers
    assert targets["wsmon-probe"] == servers * 3  # one group per probe module
    lines = list(stack.describe(list(parts.values()), state))
    assert any("the broker: wsmon, wsmon-2 relay chat" in line for line in lines)

    one = stack.configured_ports(thresholds, {"wsmon": 18080})
    single = {p.name: p for p in stack.plan(stack.State(tmp_path / "one"), one, thresholds, text)}
    assert "redis" not in single
    assert "wsmon-2" not in single
    assert "--broker" not in single["wsmon"].argv
    assert "--port" not in single["wsmon"].argv
    # Its Prometheus scrapes the one server, as the bundle's does (the file the stubbed render
    # wrote is the two servers' one, so the override says it).
    assert [overrides["deploy"]["wsmonPeerPorts"] for overrides, _ in rendered] == [[18081], []]
