"""Fixtures for the load generator's tests: a real `wsmon serve` process (support.processes.Wsmon)
and a way to run `wsmon loadtest` against it as a user would, reading back its exit status and JSON
report.

Tests reach these through fixtures and the objects they return; no test module imports conftest
at run time (tests/integration has a conftest module of the same name).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support.processes import WSMON, Wsmon
from support.redis import redis_server

# Fixtures from the support modules, offered to the tests here.
__all__ = ["redis_server"]

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def server_factory() -> Iterator[Callable[..., Wsmon]]:
    """Start `wsmon serve --host 127.0.0.1 --port 0 ARGS...`; each is stopped after the module."""
    servers: list[Wsmon] = []

    def start(*extra: str) -> Wsmon:
        server = Wsmon(*extra)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


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
