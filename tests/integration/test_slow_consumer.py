"""A client that stops reading loses its connection, not the server's memory (send_buffer_limit)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest
from websockets.asyncio.client import connect

if TYPE_CHECKING:
    from conftest import Eventually, ServerFactory

pytestmark = pytest.mark.integration

SEND_BUFFER_LIMIT = 65536


async def test_a_client_that_stops_reading_is_cut_off(
    wsmon: ServerFactory, eventually: Eventually
) -> None:
    """A subscriber that never reads gets 12 MB published at it, far past what the kernel's
    socket buffers and --send-buffer-limit 64 KiB hold: the server closes it (counted as a
    slow_consumer drop) within seconds, and keeps serving the publisher."""
    server = wsmon("--send-buffer-limit", str(SEND_BUFFER_LIMIT), workers=1)
    # max_queue=1: the websockets client stops reading its socket once one frame waits unread.
    slow = await connect(
        server.ws_url(), compression=None, max_queue=1, ping_interval=None, close_timeout=1
    )
    await slow.recv()  # welcome
    await slow.send('{"type":"subscribe","topic":"firehose","id":1}')
    # The ack: the subscription is in place before anything is published. Nothing is read after.
    assert json.loads(await slow.recv()) == {"type": "ack", "id": 1}
    publisher = await server.connect()
    before = await server.scrape()
    chunk = "x" * 60_000
    for number in range(200):
        await publisher.send(
            {"type": "publish", "topic": "firehose", "payload": chunk, "n": number}
        )
    after = await eventually(
        server.scrape,
        lambda m: m.total("wsmon_connections_active") == 1,
        within=10,
        what="the slow consumer's connection is closed",
    )
    assert after.delta(before, "wsmon_deliveries_dropped_total", reason="slow_consumer") >= 1
    # One client cut off is one disconnect, whatever number of deliveries it missed meanwhile.
    assert after.delta(before, "wsmon_slow_consumers_disconnected_total") == 1
    reply = await publisher.request({"type": "ping"})
    assert reply["type"] == "pong"
    await slow.close()
