"""The stack's pieces that need no process: its record, ports, unit parsing and summary."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
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
