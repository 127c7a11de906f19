"""/metrics tells the truth: every counter moves by exactly what the clients did.

Each test compares two scrapes (before/after) of the pool-wide exposition, parsed with
prometheus_client's parser, against what the clients really sent and received.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Client, Eventually, WsmonServer
    from support.metrics import Metrics

from wsmon.catalogue import CLIENT_TYPES, FANOUT_TYPES

pytestmark = pytest.mark.integration

ACKED_TYPES = tuple(t for t in CLIENT_TYPES if t not in ("echo", "ping"))
M = 4  # messages of each client type


def received_types(m: Metrics) -> dict[str, float]:
    return {dict(ls)["type"]: v for ls, v in m.series("wsmon_messages_received_total").items()}


async def test_connection_gauges_and_counters_follow_opens_and_closes(
    server: WsmonServer,
) -> None:
    """K=7 open connections: the summed wsmon_connections_active is exactly 7 at once (per worker:
    as the welcomes say), opened_total and sent{welcome} moved by 7; after the clients close
    normally, active returns to 0 and closed_total{code="1000"} moved by 7 (no other code)."""
    k = 7
    await server.wait_active(0)
    before = await server.scrape()
    clients = await server.connect_many(k)
    counts = clients.counts()
    assert set(counts) == {0, 1}, f"7 connections all landed on one worker: {dict(counts)}"

    opened = await server.scrape()  # no retry: /metrics asks every worker at scrape time
    assert opened.total("wsmon_connections_active") == k
    for worker, held in counts.items():
        assert opened.value("wsmon_connections_active", worker=str(worker)) == held
    assert opened.delta(before, "wsmon_connections_opened_total") == k
    assert opened.delta(before, "wsmon_messages_sent_total", type="welcome") == k

    await clients.close()
    closed = await server.wait_active(0, within=2.0)
    assert closed.delta(before, "wsmon_connections_closed_total", code="1000") == k
    assert closed.delta(before, "wsmon_connections_closed_total") == k, "closes under other codes"
    assert closed.delta(before, "wsmon_connections_opened_total") == k


async def _scenario(a: Client, c: Client, b: Client, d: Client) -> Counter[str]:
    """M valid messages of every client type from four clients (a, c on worker 0; b, d on 1).

    Returns the deliveries each fan-out type made (one per recipient), after every recipient has
    read its deliveries.
    """
    everyone = (a, b, c, d)
    deliveries: Counter[str] = Counter()

    async def ok(client: Client, message: dict[str, object]) -> None:
        reply = await client.request(message)
        expected = {"echo": "echo", "ping": "pong"}.get(str(message["type"]), "ack")
        assert reply["type"] == expected, (message, reply)

    for client, user in zip(everyone, ("ann", "ben", "ben", "dan"), strict=True):
        await ok(client, {"type": "identify", "user": user})
    for client, room in zip(everyone, ("room", "room", "room", "elsewhere"), strict=True):
        await ok(client, {"type": "join", "room": room})
    for client, topic in zip(everyone, ("topic", "topic", "other", "topic"), strict=True):
        await ok(client, {"type": "subscribe", "topic": topic})
    for client in everyone:
        await ok(client, {"type": "echo", "text": "é and ü count as two bytes each"})
        await ok(client, {"type": "ping"})

    for i, sender in enumerate((a, a, b, b)):  # room members: a, b, c
        await ok(sender, {"type": "chat", "room": "room", "text": f"chat {i}"})
        for member in {a, b, c} - {sender}:
            await member.delivery("chat", text=f"chat {i}")
            deliveries["chat"] += 1
    for i in range(M):  # user ben: b and c, on different workers
        await ok(d, {"type": "notify", "user": "ben", "payload": i})
        for ben in (b, c):
            await ben.delivery("notify", payload=i)
            deliveries["notify"] += 1
    for i in range(M):  # topic subscribers: a, b, d
        await ok(a, {"type": "publish", "topic": "topic", "payload": i})
        for sub in (b, d):
            await sub.delivery("publish", payload=i)
            deliveries["publish"] += 1
    for i in range(M):
        await ok(c, {"type": "broadcast", "payload": i})
        for other in (a, b, d):
            await other.delivery("broadcast", payload=i)
            deliveries["broadcast"] += 1

    for client, room in zip(everyone, ("room", "room", "room", "elsewhere"), strict=True):
        await ok(client, {"type": "leave", "room": room})
    for client, topic in zip(everyone, ("topic", "topic", "other", "topic"), strict=True):
        await ok(client, {"type": "unsubscribe", "topic": topic})
    return deliveries


async def test_every_message_type_is_counted_exactly(server: WsmonServer) -> None:
    """M=4 valid messages of each of the 11 client types: received_total{type} moved by exactly
    4 each (and nothing under invalid); sent_total moved by 36 acks, 4 pongs, 4 echoes and one
    delivery per recipient for chat/notify/publish/broadcast; the latency histograms counted each
    message once; delivery latency and fan-out sizes add up to the deliveries; bytes in and out
    are the clients' payload bytes; no error was counted."""
    pools = await server.spread(per_worker=2)
    (a, c), (b, d) = pools
    clients = (a, b, c, d)
    before = await server.scrape()
    for client in clients:
        client.sent.clear()
        client.bytes_sent = client.bytes_received = 0

    deliveries = await _scenario(a, c, b, d)
    after = await server.scrape()

    sent_by_clients: Counter[str] = sum((client.sent for client in clients), Counter())
    assert sent_by_clients == dict.fromkeys(CLIENT_TYPES, M), "the scenario itself is off"
    moved = {
        t: after.delta(before, "wsmon_messages_received_total", type=t)
        for t in (*CLIENT_TYPES, "invalid")
    }
    assert moved == {**dict.fromkeys(CLIENT_TYPES, M), "invalid": 0}
    for t in CLIENT_TYPES:
        assert after.delta(before, "wsmon_message_latency_seconds_count", type=t) == M, t

    assert deliveries == {"chat": 8, "notify": 8, "publish": 8, "broadcast": 12}
    expected_sent = {
        "ack": M * len(ACKED_TYPES),
        "pong": M,
        "echo": M,
        "error": 0,
        "welcome": 0,
        **deliveries,
    }
    sent = {t: after.delta(before, "wsmon_messages_sent_total", type=t) for t in expected_sent}
    assert sent == expected_sent
    assert after.delta(before, "wsmon_client_errors_total") == 0

    for t in FANOUT_TYPES:
        recipients = after.delta(before, "wsmon_broadcast_recipients_sum", type=t)
        assert recipients == deliveries[t], f"fan-out sizes for {t}: {recipients}"
    assert after.delta(before, "wsmon_delivery_latency_seconds_count") == sum(deliveries.values())

    bytes_in = after.delta(before, "wsmon_message_bytes_total", direction="in")
    bytes_out = after.delta(before, "wsmon_message_bytes_total", direction="out")
    assert bytes_in == sum(client.bytes_sent for client in clients)
    assert bytes_out == sum(client.bytes_received for client in clients)

    for client in clients:
        assert await client.unclaimed() == [], f"unexpected frames on worker {client.worker}"


async def test_errors_are_counted_by_type_and_reason(server: WsmonServer) -> None:
    """Bad messages of nine kinds each get an error frame with the right code and ref, move
    client_errors_total{type,reason} by exactly their count (and nothing else), count under
    received_total{type="invalid"} when their type is unknowable, and leave the connection open."""
    client = await server.connect()
    for n in range(100):  # fill the membership budget so the next join is refused
        assert (await client.request({"type": "join", "room": f"r{n}"}))["type"] == "ack"
    before = await server.scrape()

    bad: list[tuple[str | bytes, str, str, str | int | None]] = [
        # frame, error type label, reason (= error code), ref
        ("not json", "invalid", "invalid_json", None),
        ("{'single': 'quotes'}", "invalid", "invalid_json", None),
        ("[1, 2]", "invalid", "not_an_object", None),
        ('{"type": "teleport", "id": "t1"}', "invalid", "unknown_type", "t1"),
        ('{"type": 7, "id": 8}', "invalid", "unknown_type", 8),
        ('{"id": "n1"}', "invalid", "missing_field", "n1"),
        (b"\x00\xff binary", "invalid", "binary_frame", None),
        ('{"type": "join", "id": "j1"}', "join", "missing_field", "j1"),
        ('{"type": "join", "room": "", "id": "j2"}', "join", "invalid_field", "j2"),
        ('{"type": "notify", "user": 5, "id": "n2"}', "notify", "invalid_field", "n2"),
        ('{"type": "chat", "room": "no", "text": "hi", "id": "c1"}', "chat", "not_in_room", "c1"),
        ('{"type": "join", "room": "r100", "id": "j3"}', "join", "too_many_memberships", "j3"),
    ]
    for frame, _, reason, ref in bad:
        await client.send_raw(frame)
        reply = await client.recv()
        assert reply["type"] == "error", (frame, reply)
        assert (reply["code"], reply["ref"]) == (reason, ref), (frame, reply)
        assert isinstance(reply["message"], str), reply
        assert reply["message"], reply

    assert (await client.request({"type": "ping"}))["type"] == "pong", "connection closed by errors"
    echoed = await client.request({"type": "echo", "still": "open"})
    assert echoed["still"] == "open"
    after = await server.scrape()

    expected = Counter((type_, reason) for _, type_, reason, _ in bad)
    for (type_, reason), count in expected.items():
        moved = after.delta(before, "wsmon_client_errors_total", type=type_, reason=reason)
        assert moved == count, f"errors{{type={type_},reason={reason}}} moved by {moved}"
    assert after.delta(before, "wsmon_client_errors_total") == len(bad), "other errors counted"
    assert after.total("wsmon_message_failures_total") == 0, "a client error counted as failure"
    invalid = sum(1 for _, type_, _, _ in bad if type_ == "invalid")
    assert after.delta(before, "wsmon_messages_received_total", type="invalid") == invalid
    assert after.delta(before, "wsmon_messages_sent_total", type="error") == len(bad)
    assert after.total("wsmon_connections_active") >= 1
    assert client.conn.close_code is None, "an error closed the connection"


async def test_every_frame_is_counted_once_as_received(server: WsmonServer) -> None:
    """Each frame a client sends moves wsmon_messages_received_total (summed over types) by exactly
    one, whether it is valid or refused, so errors/received is a true ratio (the
    client_error_ratio and message_error_rate health checks and alerts divide by it)."""
    client = await server.connect()
    before = await server.scrape()
    frames = [
        '{"type": "ping", "id": "ok"}',  # valid
        "not json",  # invalid_json, counted under type="invalid"
        '{"type": "join", "id": "no-room"}',  # known type, missing field
        '{"type": "join", "room": "", "id": "empty-room"}',  # known type, invalid field
        '{"type": "echo", "id": true}',  # known type, invalid id
        '{"type": "identify", "user": ["x"]}',  # known type, invalid field
    ]
    for frame in frames:
        await client.send_raw(frame)
        await client.recv()
    after = await server.scrape()

    errors = after.delta(before, "wsmon_client_errors_total")
    assert errors == len(frames) - 1
    name = "wsmon_messages_received_total"
    moved = {t: after.delta(before, name, type=t) for t in received_types(after)}
    moved = {t: n for t, n in moved.items() if n}
    assert after.delta(before, "wsmon_messages_received_total") == len(frames), (
        f"{len(frames)} frames ({errors:.0f} refused) moved received_total by {moved}"
    )


async def test_bytes_out_counts_every_frame_the_server_sends(server: WsmonServer) -> None:
    """wsmon_message_bytes_total{direction="out"} moves by the payload bytes of every frame the
    clients received, the welcome frame included; direction="in" by every byte they sent."""
    before = await server.scrape()
    clients = await server.connect_many(3)
    for client in clients:
        await client.request({"type": "ping"})
    after = await server.scrape()
    bytes_out = after.delta(before, "wsmon_message_bytes_total", direction="out")
    received = sum(client.bytes_received for client in clients)
    assert bytes_out == received, f"clients received {received} bytes; counted: {bytes_out:.0f}"
    assert after.delta(before, "wsmon_message_bytes_total", direction="in") == sum(
        client.bytes_sent for client in clients
    )


async def test_aborted_connection_leaves_the_gauge_and_counts_as_1006(
    server: WsmonServer, eventually: Eventually
) -> None:
    """A connection the client drops without a close frame still leaves the gauge (within 2 s) and
    is counted as closed with 1006."""
    before = await server.scrape()
    client = await server.connect()
    client.conn.transport.abort()  # no close frame: the server must notice the TCP reset/EOF
    after = await eventually(
        server.scrape,
        lambda m: m.delta(before, "wsmon_connections_closed_total") == 1,
        within=2,
        what="an aborted connection counted as closed",
    )
    assert after.delta(before, "wsmon_connections_closed_total", code="1006") == 1
    assert after.total("wsmon_connections_active") == before.total("wsmon_connections_active")
