"""The local `wsmon serve` a loopback run starts: what it holds before it is started."""

from __future__ import annotations

import os

from support.processes import HOST, free_port

from wsmon.loadgen.local_server import LocalServer


def open_descriptors() -> list[str]:
    return sorted(os.listdir("/proc/self/fd"))


def test_log_file_is_created_without_holding_a_descriptor() -> None:
    before = open_descriptors()
    servers = [LocalServer(HOST, free_port()) for _ in range(5)]
    try:
        # start() opens the log by name when it launches the server; nothing is open until then.
        assert open_descriptors() == before
        logs = [server._log for server in servers]
        assert all(log.is_file() and log.name.startswith("wsmon-serve-") for log in logs)
        assert len(set(logs)) == 5
    finally:
        for server in servers:
            server.stop()
    assert not any(log.exists() for log in logs)
    assert open_descriptors() == before
