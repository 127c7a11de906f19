"""Two instances of `wsmon serve --workers 2` and a real redis-server between them (`--broker`):
chat, notify, publish and broadcast reach every recipient on both instances exactly once; with
Redis stopped local delivery goes on, the deliveries for the other instance are counted lost and
/api/health says degraded; with Redis back, delivery between instances resumes without a restart;
and the counters on both instances balance."""

from __future__ import annotations

import json
import secrets
from typing import TYPE_CHECKING

import pytest
from support.redis import RedisServer, hung

if TYPE_CHECKING:
    from conftest import Client, Eventually, ServerFactory, WsmonServer
    from support.metrics import Metrics

pytestmark = pytest.mark.integration


@pytest.fixture
def instances(
    wsmon: ServerFactory, redis_server: RedisServer, eventually: Eventually
) -> tuple[WsmonServer, WsmonServer]:
    # A channel of the test's own: pub/sub channels are shared by every database of a Redis.
    channel = f"wsmon-test-{secrets.token_hex(4)}"
    flags = ("--broker", redis_server.url, "--broker-channel", channel)
    return wsmon(*flags), wsmon(*flags)


async def broker_up(server: WsmonServer, eventually: Eventually, up: int) -> Metrics:
    return await eventually(
        server.scrape,
        lambda m: m.value("wsmon_broker_up") == up,
        within=20,
        what=f"wsmon_broker_up == {up} on :{server.port}",
    )


async def joined(clients: list[Client], **subscription: str) -> None:
    kind = "join" if "room" in subscription else "subscribe"
    for client in clients:
        assert (await client.request({"type": kind, **subscription}))["type"] == "ack"


async def test_every_delivery_reaches_both_instances_exactly_once(
    instances: tuple[WsmonServer, WsmonServer], eventually: Eventually
) -> None:
    a, b = instances
    for server in (a, b):
        await broker_up(server, eventually, 1)
    before = {server.port: await server.scrape() for server in (a, b)}
    (a0,), (a1,) = await a.spread(per_worker=1)
    (b0,), (b1,) = await b.spread(per_worker=1)
    everyone = [a0, a1, b0, b1]

    await joined(everyone, room="lobby")
    await a0.request({"type": "chat", "room": "lobby", "text": "from a"})
    for member in (a1, b0, b1):
        got = await member.delivery("chat", text="from a")
        assert got["from"] == a0.connection_id

    await b1.request({"type": "identify", "user": "bob"})
    await a1.request({"type": "notify", "user": "bob", "payload": {"n": 1}})
    assert (await b1.delivery("notify", payload={"n": 1}))["from"] == a1.connection_id

    await joined([a1, b0], topic="prices")
    await b1.request({"type": "publish", "topic": "prices", "payload": [1, 2]})
    for subscriber in (a1, b0):
        await subscriber.delivery("publish", payload=[1, 2])

    await a0.request({"type": "broadcast", "payload": "drill"})
    for client in (a1, b0, b1):
        await client.delivery("broadcast", payload="drill")

    # Nothing twice, nothing to the sender or to non-members: the barrier of unclaimed() is a
    # ping on each, after every expected delivery has crossed Redis.
    for client in everyone:
        assert await client.unclaimed() == [], f"unexpected frames on {client.welcome}"

    after_a, after_b = await a.scrape(), await b.scrape()
    # A published its chat, notify and broadcast; B its publish: once each, whichever worker.
    assert after_a.delta(before[a.port], "wsmon_broker_published_total") == 3
    assert after_b.delta(before[b.port], "wsmon_broker_published_total") == 1
    assert after_b.delta(before[b.port], "wsmon_broker_received_total") == 3
    assert after_a.delta(before[a.port], "wsmon_broker_received_total") == 1
    for after in (after_a, after_b):
        assert after.total("wsmon_broker_lost_total") == 0
    # Each instance timed its own deliveries' round trip through Redis.
    assert after_a.value("wsmon_broker_delay_seconds_count") >= 3  # and its heartbeats
    # Sent by type: each recipient counted once, on the instance that wrote to it.
    sent = {
        kind: after_a.delta(before[a.port], "wsmon_messages_sent_total", type=kind)
        + after_b.delta(before[b.port], "wsmon_messages_sent_total", type=kind)
        for kind in ("chat", "notify", "publish", "broadcast")
    }
    assert sent == {"chat": 3, "notify": 1, "publish": 2, "broadcast": 3}


async def test_without_redis_local_delivery_goes_on_and_losses_are_counted(
    instances: tuple[WsmonServer, WsmonServer],
    redis_server: RedisServer,
    eventually: Eventually,
) -> None:
    a, b = instances
    for server in (a, b):
        await broker_up(server, eventually, 1)
    (a0,), (a1,) = await a.spread(per_worker=1)
    (b0,) = [await b.connect()]
    await joined([a0, a1, b0], room="ops")

    redis_server.stop()
    before = await broker_up(a, eventually, 0)
    await broker_up(b, eventually, 0)
    status, _, body = await a.get("/api/health")
    health = json.loads(body)
    assert status == 200, "degraded, not unhealthy: the instance still serves its own clients"
    assert health["status"] == "degraded"
    (check,) = [c for c in health["checks"] if c["name"] == "broker"]
    assert check["status"] == "degraded"
    assert "unreachable" in check["detail"]

    # Across A's two workers as ever; B's member misses it, and A counts it lost.
    await a0.request({"type": "chat", "room": "ops", "text": "while down"})
    await a1.delivery("chat", text="while down")
    after = await eventually(
        a.scrape,
        lambda m: m.delta(before, "wsmon_broker_lost_total") == 1,
        within=10,
        what="the delivery for B counted lost",
    )
    assert after.delta(before, "wsmon_broker_published_total") == 0
    assert await b0.unclaimed() == []

    redis_server.start()  # the same port: both reconnect and subscribe again by themselves
    for server in (a, b):
        metrics = await broker_up(server, eventually, 1)
        assert metrics.value("wsmon_broker_reconnects_total") >= 1
    await a0.request({"type": "chat", "room": "ops", "text": "back"})
    await b0.delivery("chat", text="back")
    await a1.delivery("chat", text="back")
    status, _, body = await a.get("/api/health")
    (check,) = [c for c in json.loads(body)["checks"] if c["name"] == "broker"]
    assert check["status"] == "healthy"


async def test_a_redis_that_hangs_is_found_and_left_behind(
    instances: tuple[WsmonServer, WsmonServer],
    redis_server: RedisServer,
    eventually: Eventually,
) -> None:
    """A broker that stops answering without closing (a partition; here SIGSTOP) is taken for
    down within a publish timeout, its deliveries counted lost, and used again when it answers."""
    a, b = instances
    for server in (a, b):
        await broker_up(server, eventually, 1)
    (a0,) = [await a.connect()]
    (b0,) = [await b.connect()]
    await joined([a0, b0], room="ops")
    with hung(redis_server):
        before = await broker_up(a, eventually, 0)
        await a0.request({"type": "chat", "room": "ops", "text": "into the void"})
        await eventually(
            a.scrape,
            lambda m: m.delta(before, "wsmon_broker_lost_total") == 1,
            within=10,
            what="the delivery for B counted lost",
        )
    await broker_up(a, eventually, 1)
    await a0.request({"type": "chat", "room": "ops", "text": "answering again"})
    await b0.delivery("chat", text="answering again")
    assert await b0.unclaimed() == [], "the chat sent while Redis hung never arrives late"
