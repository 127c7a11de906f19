"""`wsmon serve` lifts the open-file limit its workers inherit to what worker_capacity needs, and
says so when the hard limit does not allow it (systemd's default soft limit is 1,024: without
this a worker would fail to take connections past about a thousand)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from support.processes import HOST, WSMON, Service, children, cmdline

from wsmon.limits import SPARE

pytestmark = pytest.mark.integration


def max_open_files(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    raise AssertionError(f"/proc/{pid}/limits has no open-file limit")


def serving(limits: str) -> Service:
    """`wsmon serve` with one worker of capacity 3,000, started under the open-file `limits`
    (soft:hard; prlimit execs it, so the pid is the supervisor's)."""
    return Service(
        "wsmon",
        [
            *("prlimit", f"--nofile={limits}", "--"),
            *(str(WSMON), "serve", "--no-auth", "--host", HOST, "--port", "0"),
            *("--workers", "1", "--worker-capacity", "3000"),
        ],
    )


def test_the_workers_inherit_a_limit_lifted_for_their_capacity() -> None:
    server = serving("512:20000")
    try:
        assert server.wait_for(re.compile("serving on"), 30), server.log
        workers = [pid for pid in children(server.pid) if "wsmon.exporter.worker" in cmdline(pid)]
        assert [max_open_files(pid) for pid in workers] == [3000 + SPARE]
        assert "open-file limit" not in server.log
    finally:
        server.stop()


def test_a_hard_limit_below_the_capacity_is_reported() -> None:
    server = serving("512:512")
    try:
        warning = server.wait_for(re.compile("the open-file limit is 512"), 30)
        assert warning is not None, server.log
        assert "below worker_capacity 3000" in warning.string
        assert server.wait_for(re.compile("serving on"), 30), "it serves all the same"
    finally:
        server.stop()
