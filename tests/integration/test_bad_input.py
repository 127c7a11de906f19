"""Hard limits over the wire: frames past --max-message-bytes close only their own connection with
1009, broken frames with 1007, and a client over --rate-limit gets rate_limited errors; each is
counted, and every other client carries on."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Client, Eventually, ServerFactory, WsmonServer
    from support.metrics import Metrics

pytestmark = pytest.mark.integration

MAX_MESSAGE_BYTES = 1024
RATE_LIMIT = 5
MESSAGE_TOO_BIG = 1009
INVALID_PAYLOAD = 1007


@pytest.fixture(scope="module")
def server(module_wsmon: ServerFactory) -> WsmonServer:
    """A 2-worker pool with small limits: 1 KiB frames, 5 messages per connection per second."""
    return module_wsmon(
        "--max-message-bytes", str(MAX_MESSAGE_BYTES), "--rate-limit", str(RATE_LIMIT)
    )


def echo_of_size(size: int) -> str:
    """An echo message whose UTF-8 encoding is exactly `size` bytes."""
    frame = json.dumps({"type": "echo", "pad": ""})
    return json.dumps({"type": "echo", "pad": "x" * (size - len(frame))})


def closed_codes(before: Metrics, after: Metrics) -> dict[str, float]:
    """closed_total{code} series that moved between two scrapes."""
    name = "wsmon_connections_closed_total"
    moved = {dict(ls)["code"]: after.delta(before, name, **dict(ls)) for ls in after.series(name)}
    return {code: n for code, n in moved.items() if n}


async def _still_served(clients: list[Client]) -> None:
    for client in clients:
        reply = await client.request({"type": "echo", "text": "unaffected"})
        assert reply["text"] == "unaffected", reply


async def test_oversized_frame_closes_that_client_with_1009(
    server: WsmonServer, eventually: Eventually
) -> None:
    """A 2000-byte frame (limit 1024) closes its sender with 1009 and is counted as
    errors{type="invalid",reason="too_large"}, received{type="invalid"} and closed{code="1009"};
    clients on the same and on the other worker keep being served."""
    (victim, neighbour), (other, _) = await server.spread(per_worker=2)
    before = await server.scrape()
    await victim.send_raw(json.dumps({"type": "echo", "pad": "x" * 2000}))
    assert await victim.closed() == MESSAGE_TOO_BIG

    after = await eventually(
        server.scrape,
        lambda m: m.delta(before, "wsmon_connections_closed_total") >= 1,
        within=2,
        what="the 1009 close counted",
    )
    moved = after.delta(before, "wsmon_client_errors_total", type="invalid", reason="too_large")
    assert moved == 1
    assert after.delta(before, "wsmon_client_errors_total") == 1
    assert after.delta(before, "wsmon_messages_received_total", type="invalid") == 1
    await _still_served([neighbour, other])
    assert after.delta(before, "wsmon_connections_closed_total", code="1009") == 1, (
        f"the 1009 close was counted as {closed_codes(before, after)}"
    )


async def test_frame_of_exactly_max_message_bytes_is_accepted(server: WsmonServer) -> None:
    """--max-message-bytes is the largest frame accepted (docs/protocol.md: "a frame larger than
    max_message_bytes" closes with 1009): 1024 bytes echo back, 1025 bytes close with 1009."""
    largest = echo_of_size(MAX_MESSAGE_BYTES)
    assert len(largest.encode()) == MAX_MESSAGE_BYTES
    client = await server.connect()
    await client.send_raw(largest)
    reply = await client.recv_or_close()
    assert reply is not None, (
        f"a {MAX_MESSAGE_BYTES}-byte frame closed the connection with {client.conn.close_code}"
    )
    assert reply["pad"] == json.loads(largest)["pad"]

    too_big = await server.connect()
    await too_big.send_raw(echo_of_size(MAX_MESSAGE_BYTES + 1))
    assert await too_big.closed() == MESSAGE_TOO_BIG


async def test_invalid_utf8_text_frame_closes_with_1007(
    server: WsmonServer, eventually: Eventually
) -> None:
    """A text frame that is not UTF-8 breaks RFC 6455: the sender is closed with 1007 and it is
    counted as errors{type="invalid",reason="invalid_frame"}."""
    bystander = await server.connect()
    client = await server.connect()
    before = await server.scrape()
    await client.conn.send(b'{"type": "echo", "bad": "\xff\xfe"}', text=True)
    assert await client.closed() == INVALID_PAYLOAD
    after = await eventually(
        server.scrape,
        lambda m: m.delta(before, "wsmon_connections_closed_total") >= 1,
        within=2,
        what="the 1007 close counted",
    )
    moved = after.delta(before, "wsmon_client_errors_total", type="invalid", reason="invalid_frame")
    assert moved == 1
    await _still_served([bystander])
    assert after.delta(before, "wsmon_connections_closed_total", code="1007") == 1, (
        f"the 1007 close was counted as {closed_codes(before, after)}"
    )


async def test_rate_limit_refuses_the_excess_and_counts_it(
    server: WsmonServer, eventually: Eventually
) -> None:
    """7 pings at once with --rate-limit 5: five pongs, then two rate_limited errors with their
    refs; received{type="ping"} moves by 7 and errors{type="ping",reason="rate_limited"} by 2;
    the connection stays open and is served again in the next second."""
    client = await server.connect()
    before = await server.scrape()
    ids = [f"burst-{n}" for n in range(7)]
    for ref in ids:
        await client.send({"type": "ping", "id": ref})
    replies = [await client.recv() for _ in ids]
    assert [r["type"] for r in replies] == ["pong"] * 5 + ["error"] * 2, replies
    assert [r.get("id", r.get("ref")) for r in replies] == ids
    assert {r["code"] for r in replies[5:]} == {"rate_limited"}

    after = await server.scrape()
    assert after.delta(before, "wsmon_messages_received_total", type="ping") == 7
    moved = after.delta(before, "wsmon_client_errors_total", type="ping", reason="rate_limited")
    assert moved == 2

    async def ping() -> str:
        return str((await client.request({"type": "ping"}))["type"])

    await eventually(ping, lambda t: t == "pong", within=3, interval=0.25, what="served again")
