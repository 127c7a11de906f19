"""`wsmon alerts list | ack | unack` against a real Alertmanager (Debian's, v2 API)."""

from __future__ import annotations

import http.server
import json
import re
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from support.processes import HOST, free_port
from support.stack import Stack

from wsmon.alerting import build
from wsmon.cli import main
from wsmon.thresholds import DEFAULT_THRESHOLDS, load

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


@pytest.mark.integration
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


@pytest.mark.integration
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


class Impostor(http.server.ThreadingHTTPServer):
    """An HTTP server that is not Alertmanager: every request gets `status`, `content_type` and
    `body`; `requests` records "METHOD path" of each."""

    status = 200
    content_type = "text/html"
    body = b"<html><body>Sign in to continue</body></html>"

    def __init__(self) -> None:
        super().__init__((HOST, 0), ImpostorHandler)
        self.requests: list[str] = []

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server_address[1]}"


class ImpostorHandler(http.server.BaseHTTPRequestHandler):
    server: Impostor

    def _answer(self) -> None:
        self.server.requests.append(f"{self.command} {self.path}")
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(self.server.status)
        self.send_header("Content-Type", self.server.content_type)
        self.send_header("Content-Length", str(len(self.server.body)))
        self.end_headers()
        self.wfile.write(self.server.body)

    do_GET = do_POST = do_DELETE = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def impostor() -> Iterator[Impostor]:
    server = Impostor()
    # Polled every 20 ms: shutdown() waits for the next poll (0.5 s by default, every test).
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


def test_url_without_scheme_is_a_usage_error(monkeypatch: pytest.MonkeyPatch) -> None:
    result = wsmon("alerts", "list", "--alertmanager", "localhost:9093")
    assert result.exit_code == 2
    assert isinstance(result.exception, SystemExit)  # click's usage error, no traceback
    assert (
        "Invalid value for '--alertmanager': not an http:// or https:// URL: 'localhost:9093'"
        in result.output
    )
    monkeypatch.setenv("WSMON_ALERTMANAGER_URL", "ws://127.0.0.1:9093")
    for argv in (("list",), ("ack", "WsmonX", "--comment", "c"), ("unack", "some-id")):
        result = wsmon("alerts", *argv)
        assert result.exit_code == 2, argv
        assert isinstance(result.exception, SystemExit)
        assert "not an http:// or https:// URL: 'ws://127.0.0.1:9093'" in result.output


def test_bad_port_is_a_usage_error() -> None:
    result = wsmon("alerts", "list", "--alertmanager", "http://127.0.0.1:am")
    assert result.exit_code == 2
    assert isinstance(result.exception, SystemExit)
    assert "not a valid URL: 'http://127.0.0.1:am'" in result.output


def test_html_answer_is_a_clear_error(impostor: Impostor) -> None:
    result = wsmon("alerts", "list", "--alertmanager", impostor.url)
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)  # no JSONDecodeError traceback
    assert result.output == (
        f"Error: GET /alerts?active=true&silenced=true&inhibited=true&unprocessed=true: "
        f"the answer from {impostor.url} is not JSON, so not from Alertmanager's v2 API "
        "(a proxy or another service?); it starts: "
        "'<html><body>Sign in to continue</body></html>'\n"
    )
    assert impostor.requests == [
        "GET /api/v2/alerts?active=true&silenced=true&inhibited=true&unprocessed=true"
    ]
    result = wsmon("alerts", "ack", "WsmonX", "--comment", "c", "--alertmanager", impostor.url)
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)
    assert result.output.startswith(f"Error: POST /silences: the answer from {impostor.url} is not")


@pytest.mark.parametrize(
    ("argv", "body", "problem"),
    [
        (["list"], {"alerts": []}, "expected a JSON list, got an object"),
        (["list"], [{"labels": {"alertname": "WsmonX"}}], "no field 'status'"),
        (["list"], ["WsmonX"], "expected a JSON object, got a string"),
        (["ack", "WsmonX", "--comment", "c"], {"id": "x"}, "no field 'silenceID'"),
        (["ack", "WsmonX", "--comment", "c"], ["x"], "expected a JSON object, got a list"),
    ],
)
def test_wrongly_shaped_answer_is_a_clear_error(
    impostor: Impostor, argv: list[str], body: Any, problem: str
) -> None:
    impostor.content_type = "application/json"
    impostor.body = json.dumps(body).encode()
    result = wsmon("alerts", *argv, "--alertmanager", impostor.url)
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)  # no KeyError/TypeError traceback
    assert f"the answer from {impostor.url} is not what Alertmanager's v2 API returns (" in (
        result.output
    )
    assert problem in result.output
    assert result.output.endswith("; is this Alertmanager?\n")


def test_answer_that_is_not_http_is_unreachable() -> None:
    with socket.socket() as listener:
        listener.bind((HOST, 0))
        listener.listen(1)
        url = f"http://{HOST}:{listener.getsockname()[1]}"

        def babble() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(4096)
                conn.sendall(b"SSH-2.0-OpenSSH_9.2\r\n")

        thread = threading.Thread(target=babble, daemon=True)
        thread.start()
        result = wsmon("alerts", "list", "--alertmanager", url)
        thread.join(5)
    assert result.exit_code == 2, result.output
    assert isinstance(result.exception, SystemExit)
    expected = f"cannot reach Alertmanager at {url}: what answers on that port does not speak HTTP"
    assert expected in result.output


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
