"""`wsmon serve` that cannot listen where it is told to says why, in its own words and with what
to do about it, and exits with status 1 before any worker starts."""

from __future__ import annotations

import os
import socket
import subprocess

import pytest
from support.processes import HOST, WSMON

pytestmark = pytest.mark.integration


def serve(*flags: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WSMON_")}
    return subprocess.run(
        [str(WSMON), "serve", "--workers", "1", "--no-auth", *flags],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
        env=env,
    )


def test_a_port_another_process_holds() -> None:
    with socket.create_server((HOST, 0)) as taken:
        port = taken.getsockname()[1]
        done = serve("--host", HOST, "--port", str(port))
    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines()[-1] + "\n" == (
        f"Error: cannot listen on {HOST}:{port}: another process listens on that port"
        " (stop it, or pick another --port)\n"
    )


@pytest.mark.parametrize(
    ("host", "problem"),
    [
        # TEST-NET-1 (RFC 5737): documentation only, the address of no interface here.
        ("192.0.2.1", "no network interface of this machine has that address (check --host)"),
        # .invalid never resolves (RFC 6761).
        ("wsmon.invalid", "the host name does not resolve (check --host)"),
    ],
    ids=["foreign address", "unresolvable name"],
)
def test_a_host_this_machine_cannot_listen_on(host: str, problem: str) -> None:
    done = serve("--host", host, "--port", "0")
    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines()[-1] == f"Error: cannot listen on {host}:0: {problem}"


def test_a_metrics_port_another_process_holds() -> None:
    """The second address is bound before any worker starts too, and named with its flag."""
    with socket.create_server((HOST, 0)) as taken:
        port = taken.getsockname()[1]
        done = serve("--host", HOST, "--port", "0", "--metrics-listen", f"{HOST}:{port}")
    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines()[-1] + "\n" == (
        f"Error: cannot listen on {HOST}:{port}: another process listens on that port"
        " (stop it, or pick another --metrics-listen)\n"
    )
