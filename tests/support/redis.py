"""A real redis-server (Debian's) on 127.0.0.1 and a free port, with no persistence: stopped and
started again on the same port to play a broker that goes away and comes back."""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Iterator

import pytest

from support.processes import HOST, Service, stopped
from support.stack import tool
from wsmon.loadgen.bench.procs import free_port

START_TIMEOUT = 10.0


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A redis-server for the test, stopped after it (import it into the test module)."""
    server = RedisServer()
    server.start()
    yield server
    server.stop()


class RedisServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.service: Service | None = None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def start(self) -> None:
        argv = [
            tool("redis-server"),
            *("--bind", HOST, "--port", str(self.port)),
            *("--save", "", "--appendonly", "no"),  # nothing written to disk
        ]
        self.service = Service("redis", argv)
        deadline = time.monotonic() + START_TIMEOUT
        while not self._answers():
            if not self.service.alive() or time.monotonic() > deadline:
                log = self.service.log
                self.service.stop()
                pytest.fail(f"redis-server did not answer PING on {HOST}:{self.port}:\n{log}")
            time.sleep(0.05)

    def stop(self) -> None:
        if self.service is not None:
            self.service.stop()
            self.service = None

    def _answers(self) -> bool:
        try:
            with socket.create_connection((HOST, self.port), timeout=1) as conn:
                conn.sendall(b"PING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False


def hung(server: RedisServer) -> contextlib.AbstractContextManager[None]:
    """The server stopped (SIGSTOP): connections stay open, and nothing answers."""
    assert server.service is not None
    return stopped(server.service.pid)
