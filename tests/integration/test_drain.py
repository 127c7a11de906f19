"""SIGTERM drains: every client is told 1001 (going away), the port stops accepting, and the server
exits 0 well within --drain-seconds."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Eventually, ServerFactory

pytestmark = pytest.mark.integration

GOING_AWAY = 1001
DRAIN_SECONDS = 5
EXIT_BOUND = 8.0  # seconds from SIGTERM to exit: --drain-seconds 5 plus start-up slack


async def test_sigterm_closes_every_client_with_1001_and_exits_0(
    wsmon: ServerFactory, eventually: Eventually
) -> None:
    """With 3 connections on each worker, SIGTERM makes every client see close code 1001; new
    connections are refused once the drain has begun; the server exits with status 0 within 8 s
    and leaves no worker process behind."""
    server = wsmon("--drain-seconds", str(DRAIN_SECONDS))
    pools = await server.spread(per_worker=3)
    clients = [client for pool in pools for client in pool]
    workers = server.worker_pids()
    assert sorted(workers) == [0, 1]

    signalled = time.monotonic()
    server.signal(signal.SIGTERM)
    codes = await asyncio.gather(*(client.closed(within=EXIT_BOUND) for client in clients))
    assert codes == [GOING_AWAY] * len(clients), f"close codes seen by the clients: {codes}"

    # Once the drain has begun nobody new gets in: the port refuses the connection, or the
    # handshake completes and the server closes at once with 1001 (docs/protocol.md).
    try:
        late = await server.connect(welcome=False)
    except OSError:
        pass
    else:
        assert await late.recv_or_close() is None, "a connection was welcomed during the drain"
        assert late.conn.close_code == GOING_AWAY

    try:
        status = await asyncio.to_thread(server.wait, EXIT_BOUND - (time.monotonic() - signalled))
    except subprocess.TimeoutExpired:
        pytest.fail(f"the server was still running {EXIT_BOUND:.0f}s after SIGTERM")
    elapsed = time.monotonic() - signalled
    assert status == 0, f"exit status {status} after SIGTERM"
    assert elapsed < EXIT_BOUND, f"exited {elapsed:.1f}s after SIGTERM"

    async def leftovers() -> list[int]:
        return [pid for pid in workers.values() if server.pid_exists(pid)]

    await eventually(leftovers, lambda pids: not pids, within=2, what="workers gone")
