"""Worker restart: SIGKILL one worker; the other keeps serving, the supervisor replaces the dead
one, counts the restart, keeps the pool's counters monotonic, and balances onto it again."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Client, Eventually, ServerFactory

pytestmark = pytest.mark.integration

ABNORMAL_CLOSURE = 1006


async def _echo_forever(clients: list[Client], stop: asyncio.Event) -> int:
    """Echo round trips on `clients` until `stop`; every reply must be the exact frame sent."""
    rounds = 0
    while not stop.is_set():
        for client in clients:
            text = f"round {rounds} on {client.connection_id}"
            reply = await client.request({"type": "echo", "text": text}, within=2.0)
            assert reply == {"type": "echo", "text": text, "id": reply.get("id")}, reply
        rounds += 1
        await asyncio.sleep(0.01)
    return rounds


async def test_killed_worker_is_restarted_while_the_other_keeps_serving(
    wsmon: ServerFactory, eventually: Eventually
) -> None:
    """kill -9 worker 0: its clients see an abnormal closure (1006); worker 1's clients keep
    echoing during and after; a new worker-0 pid appears; wsmon_worker_restarts_total{worker="0"}
    is 1 (worker 1: 0); counters do not go back; new connections land on both workers."""
    server = wsmon()
    pids = server.worker_pids()
    assert sorted(pids) == [0, 1], f"worker children of {server.pid}: {pids}"
    (doomed0, doomed1), survivors = await server.spread(per_worker=2)
    before = await server.scrape()
    assert before.total("wsmon_connections_opened_total") >= 4

    stop = asyncio.Event()
    echoing = asyncio.create_task(_echo_forever(survivors, stop))
    os.kill(pids[0], signal.SIGKILL)

    for client in (doomed0, doomed1):
        assert await client.closed() == ABNORMAL_CLOSURE

    async def restarted() -> dict[int, int]:
        return server.worker_pids()

    def replaced(now: dict[int, int]) -> bool:
        return now.get(0, pids[0]) != pids[0] and now.get(1) == pids[1]

    new_pids = await eventually(restarted, replaced, within=5, what="worker 0 restarted")
    assert new_pids[1] == pids[1], "the healthy worker must not have been restarted"

    after = await eventually(
        server.scrape,
        lambda m: m.total("wsmon_workers_alive") == 2,
        within=5,
        what="wsmon_workers_alive back to 2",
    )
    stop.set()
    rounds = await echoing
    assert rounds > 0, "the surviving worker's clients made no echo round trip during the restart"
    for client in survivors:
        assert (await client.request({"type": "ping"}))["type"] == "pong"

    assert after.value("wsmon_worker_restarts_total", worker="0") == 1
    assert after.value("wsmon_worker_restarts_total", worker="1") == 0
    assert after.total("wsmon_connections_active") == 2
    # What the dead worker counted is kept: pool counters never go backwards.
    for name in ("wsmon_connections_opened_total", "wsmon_messages_sent_total"):
        assert after.total(name) >= before.total(name), name
    # Its two connections closed without a close frame, and the books still balance.
    assert after.delta(before, "wsmon_connections_closed_total", code="1006") == 2
    opened = after.total("wsmon_connections_opened_total")
    closed = after.total("wsmon_connections_closed_total")
    assert opened - closed == after.total("wsmon_connections_active")

    fresh = await server.connect_many(6)
    assert set(fresh.counts()) == {0, 1}, f"new connections went to {dict(fresh.counts())}"
    for client in fresh:
        assert (await client.request({"type": "echo", "n": client.worker}))["n"] == client.worker
    final = await server.scrape()
    expected = {0: fresh.counts()[0], 1: fresh.counts()[1] + len(survivors)}
    for worker, held in expected.items():
        assert final.value("wsmon_connections_active", worker=str(worker)) == held


async def test_a_stuck_worker_is_replaced_not_buffered_for(
    wsmon: ServerFactory, eventually: Eventually
) -> None:
    """Worker 1 is frozen (SIGSTOP) while a client on worker 0 broadcasts 70 MB: rather than
    buffer relayed deliveries for it without bound (64 MiB), the supervisor kills it and starts
    a new worker 1, counted as a restart; worker 0's client is served throughout."""
    server = wsmon("--rate-limit", "100000")
    pids = server.worker_pids()
    (sender,), _ = await server.spread(per_worker=1)
    assert sender.worker == 0
    os.kill(pids[1], signal.SIGSTOP)
    try:
        payload = "x" * 60_000
        for number in range(1200):
            reply = await sender.request({"type": "broadcast", "payload": payload, "n": number})
            assert reply["type"] == "ack", reply
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pids[1], signal.SIGCONT)

    async def workers() -> dict[int, int]:
        return server.worker_pids()

    await eventually(
        workers, lambda now: now.get(1, pids[1]) != pids[1], within=10, what="worker 1 replaced"
    )
    after = await eventually(
        server.scrape,
        lambda m: m.total("wsmon_workers_alive") == 2,
        within=10,
        what="both workers alive again",
    )
    assert after.value("wsmon_worker_restarts_total", worker="1") == 1
    assert (await sender.request({"type": "ping"}))["type"] == "pong"
