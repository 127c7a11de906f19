"""Fixtures for the load generator's tests: a real `wsmon serve` process and a way to run
`wsmon loadtest` against it as a user would, reading back its exit status and JSON report.

Tests reach these through fixtures and the objects they return; no test module imports conftest
at run time (tests/integration has a conftest module of the same name).
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[2]
WSMON = Path(sys.executable).parent / "wsmon"
READY_LINE = re.compile(r"serving on http://127\.0\.0\.1:(\d+)")
START_TIMEOUT = 15.0
STOP_TIMEOUT = 15.0


@dataclass(frozen=True)
class Scrape:
    """One /metrics scrape: (sample name, sorted labels) -> value."""

    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]

    def total(self, name: str, **labels: str) -> float:
        """Sum of `name` over the samples whose labels include `labels`."""
        return sum(
            value
            for (sample, sample_labels), value in self.samples.items()
            if sample == name and set(labels.items()) <= set(sample_labels)
        )


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def metrics(self) -> Scrape:
        with urllib.request.urlopen(f"{self.base}/metrics", timeout=5) as response:
            text = response.read().decode()
        return Scrape(
            {
                (sample.name, tuple(sorted(sample.labels.items()))): sample.value
                for family in text_string_to_metric_families(text)
                for sample in family.samples
            }
        )


def start_server(log: Path, *extra: str) -> Server:
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(WSMON), "serve", "--port", "0", *extra],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        match = READY_LINE.search(log.read_text(errors="replace"))
        if match:
            return Server(process, int(match.group(1)))
        if process.poll() is not None:
            break
        time.sleep(0.05)
    process.kill()
    pytest.fail(f"wsmon serve did not start:\n{log.read_text(errors='replace')}")


def stop_server(server: Server) -> None:
    server.process.send_signal(signal.SIGTERM)
    try:
        server.process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait()


@pytest.fixture(scope="module")
def server_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., Server]]:
    """Start `wsmon serve --port 0 ARGS...`; every server started is stopped after the module."""
    servers: list[Server] = []

    def start(*extra: str) -> Server:
        log = tmp_path_factory.mktemp("wsmon") / "serve.log"
        server = start_server(log, *extra)
        servers.append(server)
        return server

    yield start
    for server in servers:
        stop_server(server)


@dataclass
class LoadtestResult:
    returncode: int
    stdout: str
    stderr: str
    report: dict[str, Any] | None  # the JSON report, when the run wrote one


@pytest.fixture(scope="module")
def loadtest(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., LoadtestResult]:
    """Run `wsmon loadtest ARGS...` (or `./test_websocket_load.sh ARGS...` with script=True) and
    read back its JSON report from a fresh temporary file; default_reports=True leaves the
    report options to ARGS instead.
    """

    def run(*args: str, script: bool = False, default_reports: bool = False) -> LoadtestResult:
        entry = [str(REPO / "test_websocket_load.sh")] if script else [str(WSMON), "loadtest"]
        json_path = None if default_reports else tmp_path_factory.mktemp("run") / "report.json"
        extra = [] if json_path is None else ["--json", str(json_path), "--no-report"]
        done = subprocess.run(
            [*entry, *args, *extra],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=90,
            stdin=subprocess.DEVNULL,
        )
        report = (
            json.loads(json_path.read_text())
            if json_path is not None and json_path.exists()
            else None
        )
        return LoadtestResult(done.returncode, done.stdout, done.stderr, report)

    return run
