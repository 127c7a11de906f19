"""wsmon where it is deployed: started with a Kubernetes pod's environment, and --help off Linux."""

from __future__ import annotations

import subprocess
import sys
import urllib.request

import pytest
from support.kubernetes import SERVICE_LINKS
from support.processes import Wsmon

pytestmark = pytest.mark.integration


def test_serve_starts_in_a_pod_of_a_service_named_wsmon() -> None:
    """Service-link variables and an unknown WSMON_ variable are ignored with a warning each;
    the server's own settings (here WSMON_WORKER_CAPACITY) still apply."""
    env = {**SERVICE_LINKS, "WSMON_FUTURE_SETTING": "1", "WSMON_WORKER_CAPACITY": "3"}
    server = Wsmon("--workers", "1", environment=env)
    try:
        with urllib.request.urlopen(f"{server.base_url}/readyz", timeout=5) as response:
            assert response.status == 200
        capacity = server.scrape().value("wsmon_pool_capacity", worker="0")
        assert capacity == 3
        warnings = [line for line in server.lines if "WARNING" in line and "ignoring" in line]
        assert len(warnings) == 2, server.log
        assert "service-link variables" in warnings[0] or "service-link variables" in warnings[1]
        assert any("WSMON_FUTURE_SETTING" in line for line in warnings), warnings
    finally:
        server.stop()


# Python started without the Linux-only calls the server uses (macOS and Windows have none of
# them): no command may need them to import or to explain itself.
WITHOUT_LINUX_APIS = (
    "import os, socket, sys; del os.sched_getaffinity, socket.send_fds, socket.recv_fds, "
    "socket.SCM_RIGHTS, socket.TCP_KEEPIDLE; "
)
# And serve itself must say that it needs Linux rather than fail somewhere inside.
ON_MACOS = "import sys; sys.platform = 'darwin'; "
MAIN = "sys.argv[0] = 'wsmon'; from wsmon.cli import main; main()"


def as_if_elsewhere(
    *args: str, prelude: str = WITHOUT_LINUX_APIS
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-P", "-c", prelude + MAIN, *args],
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize(
    "command",
    [[], ["serve"], ["loadtest"], ["rules"], ["rules", "build"], ["alerts"], ["alerts", "ack"]],
)
def test_every_help_works_off_linux(command: list[str]) -> None:
    done = as_if_elsewhere(*command, "--help")
    assert done.returncode == 0, done.stderr
    assert "Usage: wsmon" in done.stdout


def test_serve_off_linux_says_it_needs_linux() -> None:
    done = as_if_elsewhere("serve", prelude=ON_MACOS)
    assert done.returncode == 1
    assert "wsmon serve runs on Linux only (this is darwin)" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_command_whose_extra_is_missing_names_the_extra() -> None:
    """A server-only install (`pip install wsmon`) lacks websockets and Jsonnet."""
    server_only = "import sys; sys.modules['websockets'] = sys.modules['_jsonnet'] = None; "
    listing = as_if_elsewhere("--help", prelude=server_only)
    assert listing.returncode == 0, listing.stderr
    assert "[needs wsmon[loadtest]]" in listing.stdout
    for command, extra, module in (
        ("loadtest", "loadtest", "websockets"),
        ("rules", "alerting", "_jsonnet"),
    ):
        done = as_if_elsewhere(command, "--help", prelude=server_only)
        assert done.returncode == 1
        expected = f"`wsmon {command}` needs '{module}', which comes with the '{extra}' extra"
        assert expected in done.stderr, done.stderr
    assert as_if_elsewhere("serve", "--help", prelude=server_only).returncode == 0
    # Acknowledging needs no Jsonnet; only rendering the Alertmanager config does.
    assert as_if_elsewhere("alerts", "ack", "--help", prelude=server_only).returncode == 0
    render = as_if_elsewhere("alerts", "render-config", "--output", "x", prelude=server_only)
    assert render.returncode == 1
    assert "`wsmon alerts render-config` needs '_jsonnet'" in render.stderr, render.stderr


def test_the_server_loads_nothing_of_the_other_commands() -> None:
    """What `wsmon serve` and its workers import: no Jsonnet build, no load generator (the
    import-linter contracts in `make lint` hold the static graph; this holds what really loads)."""
    probe = (
        "import sys; sys.argv[0] = 'wsmon'; from wsmon.cli import main\n"
        "main.get_command(None, 'serve')\n"
        "import wsmon.exporter.supervisor, wsmon.exporter.worker\n"
        "others = ('_jsonnet', 'websockets', 'hdrh', 'wsmon.alerting', 'wsmon.loadgen')\n"
        "print(' '.join(sorted(m for m in sys.modules if m.startswith(others))))"
    )
    done = subprocess.run(
        [sys.executable, "-P", "-c", probe], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "", done.stdout
