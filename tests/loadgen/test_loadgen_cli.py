"""Bad input: usage errors and unreachable targets exit with status 2 quickly, with a message."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest
from click.testing import CliRunner, Result

from wsmon.loadgen.cli import loadtest


def invoke(*args: str) -> Result:
    return CliRunner().invoke(loadtest, [*args, "--no-report", "--quiet"])


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port whose TCP handshake succeeds (the kernel's backlog) but that never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock.getsockname()[1]


def test_unknown_profile_lists_the_profiles() -> None:
    result = invoke("huge")
    assert result.exit_code == 2
    assert "'huge' is not one of 'light', 'medium', 'heavy', 'extreme', 'custom'" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["custom"], "the custom profile needs --connections N"),
        (["light", "--threshold", "p99<soon"], "expected METRIC<VALUE or METRIC>VALUE"),
        (["light", "--threshold", "message_success>98"], "write it with %"),
        (["light", "--mix", "echo=1,shout=1"], "unknown message type 'shout'"),
        (["light", "--url", "http://127.0.0.1:8080/ws"], "is not a ws:// or wss:// URL"),
        (["light", "--url", "ws://127.0.0.1:80800/ws"], "the port must be a number from 1 to"),
        (["light", "--url", "ws://127.0.0.1:http/ws"], "the port must be a number from 1 to"),
        (["light", "--url", "ws://127.0.0.1:0/ws"], "the port must be a number from 1 to"),
        (["light", "--interval", "0"], "--interval must be at least 0.001 s"),
    ],
)
def test_usage_errors_exit_2(args: list[str], message: str) -> None:
    result = invoke(*args)
    assert result.exit_code == 2
    assert message in result.output


def test_refused_url_fails_at_once(closed_port: int) -> None:
    started = time.monotonic()
    result = invoke("light", "--url", f"ws://127.0.0.1:{closed_port}/ws")
    assert result.exit_code == 2
    assert f"ws://127.0.0.1:{closed_port}/ws: connection refused" in result.output
    assert time.monotonic() - started < 5


def test_silent_url_fails_within_the_connect_timeout(silent_port: int) -> None:
    started = time.monotonic()
    result = invoke("light", "--url", f"ws://127.0.0.1:{silent_port}/ws", "--connect-timeout", "1")
    assert result.exit_code == 2
    assert "no answer within 1 s" in result.output
    assert time.monotonic() - started < 5


def test_every_unreachable_instance_is_named(closed_port: int, silent_port: int) -> None:
    result = invoke(
        "light",
        "--url",
        f"ws://127.0.0.1:{closed_port}/ws",
        "--url",
        f"ws://127.0.0.1:{silent_port}/ws",
        "--connect-timeout",
        "1",
    )
    assert result.exit_code == 2
    assert f"127.0.0.1:{closed_port}/ws: connection refused" in result.output
    assert f"127.0.0.1:{silent_port}/ws: no answer within 1 s" in result.output
