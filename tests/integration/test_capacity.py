"""Worker capacity: a full pool refuses a connection with close code 1013 and counts it once."""

from __future__ import annotations

import os
import signal
import socket
from collections import Counter
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Eventually, Frame, ServerFactory

pytestmark = pytest.mark.integration

TRY_AGAIN_LATER = 1013


async def test_full_pool_refuses_with_1013_and_counts_the_refusal(
    wsmon: ServerFactory, eventually: Eventually
) -> None:
    """--workers 2 --worker-capacity 2: four connections get a welcome (two per worker), the fifth
    sees close code 1013 and no welcome, rejected_total{reason="capacity"} moves by exactly 1, the
    four keep working, /readyz says 503 while every worker is full, and a slot freed by a close
    is usable again."""
    server = wsmon("--worker-capacity", "2")
    before = await server.scrape()
    assert before.total("wsmon_pool_capacity") == 4

    admitted = await server.connect_many(4)
    assert sorted(admitted.counts().items()) == [(0, 2), (1, 2)]

    refused = await server.connect(welcome=False)
    code = await refused.closed()
    assert code == TRY_AGAIN_LATER, f"the fifth connection was closed with {code}, not 1013"

    after = await server.scrape()
    assert after.delta(before, "wsmon_connections_rejected_total", reason="capacity") == 1
    rejected = after.delta(before, "wsmon_connections_rejected_total")
    assert rejected == 1, "the refusal was counted under another reason too"
    assert after.total("wsmon_connections_active") == 4
    assert after.delta(before, "wsmon_connections_opened_total") == 4, "a refusal is not an open"

    for client in admitted:
        reply = await client.request({"type": "echo", "text": "still here"})
        assert reply["text"] == "still here"

    status, _, body = await server.get("/readyz")
    assert status == 503, f"/readyz with every worker full: {status} {body!r}"

    # Free one slot: a new connection must eventually be admitted (the supervisor learns of the
    # close asynchronously, so an attempt or two may still be refused).
    await admitted.pop().close()
    await server.wait_active(3)

    async def first_frame() -> Frame | None:
        return await (await server.connect(welcome=False)).recv_or_close()

    first = await eventually(
        first_frame, lambda frame: frame is not None, within=5, what="a connection admitted"
    )
    assert first["type"] == "welcome", first


def test_a_burst_of_connections_is_queued_not_dropped(wsmon: ServerFactory) -> None:
    """1000 connections that arrive in one burst (the supervisor is paused with SIGSTOP while they
    connect, so it accepts them in one go) are all served: a worker's hand-off socket holds only
    a few hundred descriptors (its send buffer), so the supervisor must queue the rest itself
    rather than close them."""
    server = wsmon(workers=1)
    os.kill(server.pid, signal.SIGSTOP)
    try:
        burst = [
            socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(1000)
        ]
    finally:
        os.kill(server.pid, signal.SIGCONT)
    try:
        for sock in burst:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: wsmon\r\nConnection: close\r\n\r\n")
        answers = [sock.recv(64) for sock in burst]
    finally:
        for sock in burst:
            sock.close()
    served = sum(answer.startswith(b"HTTP/1.1 200") for answer in answers)
    assert served == 1000, f"only {served} of 1000 served; answers: {Counter(answers)}"
