"""Handler tests: one standalone worker under pytest-aiohttp's test client."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson
import pytest
from aiohttp import WSMsgType, web
from prometheus_client.parser import text_string_to_metric_families
from support.standalone import WORKER, standalone_app

from wsmon.exporter import app as app_module
from wsmon.exporter import auth
from wsmon.exporter.config import Settings
from wsmon.exporter.handlers import Handlers
from wsmon.exporter.hub import Connection
from wsmon.exporter.protocol import MessageId

if TYPE_CHECKING:  # TestClient is generic from aiohttp 3.11 on; the oldest allowed is 3.10
    from aiohttp.test_utils import TestClient

    Client = TestClient[web.Request, web.Application]
    MakeClient = Callable[..., Awaitable[Client]]


@pytest.fixture
def settings() -> Settings:
    return Settings(workers=1, worker_capacity=3, max_message_bytes=1024, rate_limit=5)


@pytest.fixture
async def client(aiohttp_client: MakeClient, settings: Settings) -> Client:
    return await aiohttp_client(standalone_app(settings))


async def receive(ws: Any) -> dict[str, Any]:
    msg = await ws.receive(timeout=5)
    assert msg.type is WSMsgType.TEXT, msg
    result: dict[str, Any] = orjson.loads(msg.data)
    return result


async def connect(client: Client) -> Any:
    ws = await client.ws_connect("/ws")
    welcome = await receive(ws)
    assert welcome["type"] == "welcome"
    assert welcome["worker"] == 0
    return ws


async def metric(client: Client, name: str, **labels: str) -> float:
    text = await (await client.get("/metrics")).text()
    total = 0.0
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


async def test_echo_returns_the_frame_verbatim(client: Client) -> None:
    ws = await connect(client)
    text = '{"type":"echo",  "id":"e1","payload":{"b":[1,2,"ü"]}}'
    await ws.send_str(text)
    msg = await ws.receive(timeout=5)
    assert msg.data == text  # not re-encoded: spacing and key order survive


async def test_ids_are_acknowledged_and_ping_is_answered(client: Client) -> None:
    ws = await connect(client)
    await ws.send_str('{"type":"identify","user":"ann","id":1}')
    assert await receive(ws) == {"type": "ack", "id": 1}
    await ws.send_str('{"type":"ping","id":"p"}')
    assert await receive(ws) == {"type": "pong", "id": "p"}
    await ws.send_str('{"type":"join","room":"r"}')  # no id: no ack
    await ws.send_str('{"type":"ping"}')
    assert await receive(ws) == {"type": "pong"}


async def test_chat_reaches_the_room_but_not_the_sender(client: Client) -> None:
    ann, bob, eve = await connect(client), await connect(client), await connect(client)
    for ws in (ann, bob):
        await ws.send_str('{"type":"join","room":"lobby","id":0}')
        assert (await receive(ws))["type"] == "ack"
    await ann.send_str('{"type":"identify","user":"ann","id":1}')
    await receive(ann)
    await ann.send_str('{"type":"chat","room":"lobby","text":"hi","id":2}')
    assert await receive(ann) == {"type": "ack", "id": 2}
    assert await receive(bob) == {"type": "chat", "room": "lobby", "text": "hi", "from": "ann"}
    await eve.send_str('{"type":"chat","room":"lobby","text":"x","id":3}')
    error = await receive(eve)
    assert (error["code"], error["ref"]) == ("not_in_room", 3)
    await ann.send_str('{"type":"ping"}')  # nothing else was queued for ann
    assert await receive(ann) == {"type": "pong"}


async def test_notify_publish_broadcast(client: Client) -> None:
    ann, bob, bob2 = await connect(client), await connect(client), await connect(client)
    for ws in (bob, bob2):
        await ws.send_str('{"type":"identify","user":"bob","id":1}')
        await receive(ws)
    await ann.send_str('{"type":"notify","user":"bob","payload":{"n":1}}')
    for ws in (bob, bob2):
        assert (await receive(ws))["payload"] == {"n": 1}
    await bob.send_str('{"type":"subscribe","topic":"t","id":1}')
    await receive(bob)
    await ann.send_str('{"type":"publish","topic":"t","payload":5}')
    assert (await receive(bob))["payload"] == 5
    await bob.send_str('{"type":"unsubscribe","topic":"t","id":2}')
    await receive(bob)
    await ann.send_str('{"type":"broadcast","payload":"all","id":9}')
    assert await receive(ann) == {"type": "ack", "id": 9}
    for ws in (bob, bob2):
        assert (await receive(ws))["type"] == "broadcast"  # bob got no second publish first


async def test_bad_messages_get_errors_and_the_connection_stays(client: Client) -> None:
    ws = await connect(client)
    await ws.send_str("not json")
    assert (await receive(ws))["code"] == "invalid_json"
    await ws.send_bytes(b"\x00\x01")
    assert (await receive(ws))["code"] == "binary_frame"
    await ws.send_str('{"type":"warp","id":5}')
    error = await receive(ws)
    assert (error["code"], error["ref"]) == ("unknown_type", 5)
    await ws.send_str('{"type":"ping","id":6}')
    assert await receive(ws) == {"type": "pong", "id": 6}
    assert await metric(client, "wsmon_messages_received_total", type="invalid") == 3
    assert await metric(client, "wsmon_client_errors_total", reason="binary_frame") == 1
    assert await metric(client, "wsmon_messages_sent_total", type="error") == 3


async def test_flood_is_rate_limited_then_served_again(client: Client) -> None:
    ws = await connect(client)
    for index in range(20):
        await ws.send_str(orjson.dumps({"type": "ping", "id": index}).decode())
    replies = [await receive(ws) for _ in range(20)]
    limited = [r for r in replies if r["type"] == "error"]
    assert limited, "20 messages at once over a limit of 5 a second must be refused in part"
    assert all(r["code"] == "rate_limited" for r in limited)
    assert len(limited) == await metric(client, "wsmon_client_errors_total", reason="rate_limited")


async def test_oversized_frame_closes_with_1009(client: Client) -> None:
    ws = await connect(client)
    other = await connect(client)
    await ws.send_str('{"type":"echo","payload":"' + "x" * 2000 + '"}')
    msg = await ws.receive(timeout=5)
    assert msg.type is WSMsgType.CLOSE
    assert msg.data == 1009
    await other.send_str('{"type":"ping","id":1}')
    assert await receive(other) == {"type": "pong", "id": 1}
    assert await metric(client, "wsmon_client_errors_total", reason="too_large") == 1


async def test_capacity_refuses_with_1013_and_counts(client: Client) -> None:
    open_ = [await connect(client) for _ in range(3)]
    refused = await client.ws_connect("/ws")
    msg = await refused.receive(timeout=5)
    assert (msg.type, msg.data) == (WSMsgType.CLOSE, 1013)
    assert await metric(client, "wsmon_connections_rejected_total", reason="capacity") == 1
    assert await metric(client, "wsmon_connections_active") == 3
    await open_[0].close()
    replacement = await connect(client)  # a slot freed up
    await replacement.send_str('{"type":"ping"}')
    assert await receive(replacement) == {"type": "pong"}


async def test_drain_closes_everyone_with_1001(client: Client) -> None:
    sockets = [await connect(client) for _ in range(2)]
    sockets.append(await client.ws_connect("/ws/echo"))  # /ws/echo drains too
    assert await metric(client, "wsmon_connections_active") == 3
    await client.app[WORKER].drain()
    for ws in sockets:
        msg = await ws.receive(timeout=5)
        assert (msg.type, msg.data) == (WSMsgType.CLOSE, 1001)
    assert (await client.get("/readyz")).status == 503
    late = await client.ws_connect("/ws")
    assert (await late.receive(timeout=5)).data == 1001


async def test_echo_endpoint_echoes_text_and_binary(client: Client) -> None:
    ws = await client.ws_connect("/ws/echo")
    await ws.send_bytes(b"\xff\x00raw")
    assert (await ws.receive(timeout=5)).data == b"\xff\x00raw"
    await ws.send_str("plain text, not JSON")
    assert (await ws.receive(timeout=5)).data == "plain text, not JSON"


async def test_health_endpoints(client: Client) -> None:
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/readyz")).status == 200
    response = await client.get("/api/health")
    assert response.status == 200
    document = await response.json()
    assert document["status"] == "healthy"
    assert {check["name"] for check in document["checks"]} >= {"pool_utilization", "workers"}
    _ = [await connect(client) for _ in range(3)]  # 3 of 3 slots: past the critical threshold
    response = await client.get("/api/health")
    assert (response.status, (await response.json())["status"]) == (503, "unhealthy")
    assert (await client.get("/readyz")).status == 503


async def test_a_payload_too_deep_to_deliver_is_refused_not_fatal(client: Client) -> None:
    """orjson reads 1024 levels of nesting but writes only 254: a broadcast nested 300 deep gets
    an invalid_field error and the connection carries on (an echo of it is fine: not re-encoded)."""
    ws = await connect(client)
    deep = "[" * 300 + "]" * 300
    await ws.send_str('{"type":"broadcast","id":"b","payload":' + deep + "}")
    error = await receive(ws)
    assert (error["type"], error["code"], error["ref"]) == ("error", "invalid_field", "b")
    text = '{"type":"echo","payload":' + deep + "}"
    await ws.send_str(text)
    assert (await ws.receive(timeout=5)).data == text
    assert await metric(client, "wsmon_client_errors_total", type="broadcast") == 1


async def test_a_handler_that_raises_fails_that_message_not_the_connection(
    aiohttp_client: MakeClient,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A bug in a handler is the server's failure: the client gets an internal_error frame (not
    the exception's text), the failure is counted and logged with its traceback, nothing is
    counted against the client, and the connection answers the next message."""

    def broken(
        self: Handlers, conn: Connection, obj: dict[str, Any], ref: MessageId, started: float
    ) -> bytes | None:
        raise RuntimeError("identify lost its database")

    monkeypatch.setattr(Handlers, "identify", broken)  # before the worker binds its routes
    client = await aiohttp_client(standalone_app(settings))
    ws = await connect(client)
    with caplog.at_level(logging.ERROR, logger="wsmon.exporter.app"):
        await ws.send_str('{"type":"identify","user":"ann","id":1}')
        assert await receive(ws) == {
            "type": "error",
            "code": "internal_error",
            "message": "identify: the server failed to handle this message",
            "ref": 1,
        }
    await ws.send_str('{"type":"ping","id":2}')
    assert await receive(ws) == {"type": "pong", "id": 2}

    failures = "wsmon_message_failures_total"
    assert await metric(client, failures, type="identify", reason="internal_error") == 1
    assert await metric(client, failures) == 1
    assert await metric(client, "wsmon_client_errors_total") == 0
    assert await metric(client, "wsmon_messages_sent_total", type="error") == 1
    assert await metric(client, "wsmon_message_latency_seconds_count", type="identify") == 1
    (logged,) = [record for record in caplog.records if record.exc_info]
    assert "identify handler failed" in logged.getMessage()
    assert logged.exc_info is not None
    assert str(logged.exc_info[1]) == "identify lost its database"
    # The service's own failure is what health judges: 1 of 2 messages failed.
    response = await client.get("/api/health")
    assert (response.status, (await response.json())["status"]) == (503, "unhealthy")


async def test_no_auth_is_said_again_every_interval_by_one_worker_only(
    aiohttp_client: MakeClient, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """--no-auth is logged at start by the supervisor (exporter/cli.py) and then every minute,
    here every 50 ms, by worker 0 alone; the other workers and a server with auth stay quiet."""
    monkeypatch.setattr(app_module, "NO_AUTH_REMINDER_SECONDS", 0.05)
    with caplog.at_level(logging.WARNING, logger="wsmon.exporter.app"):
        await aiohttp_client(standalone_app(Settings(workers=2, no_auth=True), index=0))
        await aiohttp_client(standalone_app(Settings(workers=2, no_auth=True), index=1))
        await aiohttp_client(standalone_app(Settings(workers=2), index=0))
        await asyncio.sleep(0.18)
    reminders = [r for r in caplog.records if r.getMessage() == auth.NO_AUTH_WARNING]
    assert 2 <= len(reminders) <= 4, [r.getMessage() for r in caplog.records]
