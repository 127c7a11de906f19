"""`wsmon alerts list | ack | unack` against a real Alertmanager (Debian's, v2 API)."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from alerting_stack import Stack
from click.testing import CliRunner, Result
from support.processes import HOST, free_port

from alerting import DEFAULT_THRESHOLDS, build
from alerting.thresholds import load
from exporter.cli import main

SILENCE_ID = re.compile(r"silence ([0-9a-f-]{36})$")


def wsmon(*argv: str) -> Result:
    return CliRunner().invoke(main, list(argv))


def post_alerts(url: str, alerts: list[dict[str, Any]]) -> None:
    request = urllib.request.Request(
        f"{url}/api/v2/alerts",
        data=json.dumps(alerts).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200


def listed(url: str) -> list[dict[str, Any]]:
    result = wsmon("alerts", "list", "--json", "--alertmanager", url)
    assert result.exit_code == 0, result.output
    rows: list[dict[str, Any]] = json.loads(result.stdout)
    return rows


def until(check: Callable[[], list[dict[str, Any]]], accept: Callable[[Any], bool]) -> Any:
    """Alertmanager applies a new silence within moments; poll briefly instead of sleeping."""
    deadline = time.monotonic() + 10
    while not accept(found := check()):
        assert time.monotonic() < deadline, f"never true; last: {found!r}"
        time.sleep(0.1)
    return found


@pytest.fixture
def alertmanager(stack: Stack, tmp_path: Path) -> str:
    """Alertmanager with the generated config; group_wait is an hour, so it never sends mail."""
    files = build.render(
        load(DEFAULT_THRESHOLDS),
        {
            "alertmanager": {"groupWait": "1h"},
            "smtp": {"smarthost": f"{HOST}:{free_port()}", "username": "", "requireTls": False},
        },
    )
    config = tmp_path / "am"
    build.write(files, config)
    _, url = stack.alertmanager(config / build.ALERTMANAGER, tmp_path / "am-data")
    return url


def test_ack_list_and_unack(alertmanager: str) -> None:
    url = alertmanager
    base = {"severity": "warning", "service": "wsmon", "job": "wsmon"}
    post_alerts(
        url,
        [
            {"labels": base | {"alertname": "WsmonX", "instance": "a:1"}},
            {"labels": base | {"alertname": "WsmonX", "instance": "b:1"}},
            {"labels": base | {"alertname": "WsmonY", "instance": "a:1"}},
        ],
    )
    rows = until(lambda: listed(url), lambda rows: len(rows) == 3)
    assert {row["state"] for row in rows} == {"active"}

    acked = wsmon(
        "alerts",
        "ack",
        "WsmonX",
        "--matcher",
        "instance=a:1",
        "--duration",
        "30m",
        "--comment",
        "looking into it",
        "--author",
        "alice",
        "--alertmanager",
        url,
    )
    assert acked.exit_code == 0, acked.output
    assert acked.stdout.startswith("acknowledged alertname=WsmonX, instance=a:1 until ")
    found = SILENCE_ID.search(acked.stdout.strip())
    assert found, acked.stdout
    silence = found.group(1)

    def states(rows: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
        return {(row["alertname"], row["instance"]): row["state"] for row in rows}

    rows = until(
        lambda: listed(url), lambda rows: states(rows).get(("WsmonX", "a:1")) == "acknowledged"
    )
    assert states(rows) == {
        ("WsmonX", "a:1"): "acknowledged",
        ("WsmonX", "b:1"): "active",
        ("WsmonY", "a:1"): "active",
    }
    (ack,) = next(r for r in rows if r["state"] == "acknowledged")["acknowledgements"]
    assert (ack["id"], ack["created_by"], ack["comment"]) == (silence, "alice", "looking into it")

    table = wsmon("alerts", "list", "--alertmanager", url)
    assert "active (2)" in table.stdout
    assert "acknowledged (1)" in table.stdout
    assert "acked by alice until" in table.stdout
    assert f"(silence {silence})" in table.stdout

    unacked = wsmon("alerts", "unack", silence, "--alertmanager", url)
    assert (unacked.exit_code, unacked.stdout.strip()) == (0, f"expired silence {silence}")
    until(lambda: listed(url), lambda rows: set(states(rows).values()) == {"active"})

    unknown = wsmon(
        "alerts", "unack", "00000000-0000-0000-0000-000000000000", "--alertmanager", url
    )
    assert unknown.exit_code == 1
    assert unknown.output.endswith(": HTTP 500: silence not found\n")


def test_ack_of_nothing_warns_but_holds(alertmanager: str) -> None:
    result = wsmon(
        "alerts", "ack", "WsmonNothing", "--comment", "pre-emptive", "--alertmanager", alertmanager
    )
    assert result.exit_code == 0, result.output
    assert "no alert matches now" in result.stderr


def test_unreachable_alertmanager_exits_2(monkeypatch: pytest.MonkeyPatch) -> None:
    nowhere = f"http://{HOST}:{free_port()}"
    result = wsmon("alerts", "list", "--alertmanager", nowhere)
    assert result.exit_code == 2
    assert f"cannot reach Alertmanager at {nowhere}" in result.output
    monkeypatch.setenv("WSMON_ALERTMANAGER_URL", nowhere)
    result = wsmon("alerts", "ack", "WsmonX", "--comment", "c")
    assert result.exit_code == 2
    assert f"cannot reach Alertmanager at {nowhere}" in result.output


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--matcher", "instance"], "must be label=value, got 'instance'"),
        (["--duration", "2 hours"], "not a duration like 30s, 5m, 2h or 1h30m: '2 hours'"),
        (["--duration", "0s"], "must be longer than 0, got '0s'"),
    ],
)
def test_bad_ack_options_are_usage_errors(flags: list[str], expected: str) -> None:
    result = wsmon("alerts", "ack", "WsmonX", "--comment", "c", *flags)
    assert result.exit_code == 2
    assert expected in result.output


def test_comment_is_required() -> None:
    result = wsmon("alerts", "ack", "WsmonX")
    assert result.exit_code == 2
    assert "Missing option '--comment'" in result.output
