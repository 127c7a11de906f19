"""The worker pool: connections are balanced over the workers, and every delivery (chat, notify,
publish, broadcast) reaches its recipients whichever worker they sit on, and never the sender.

`Client.unclaimed()` ends with a ping round trip; a frame it returns is one nobody expected (a
self-delivery, a delivery to a non-member). The checks run after the last expected delivery has
crossed the relay, so a stray copy travelling the same path would already be there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import WsmonServer

pytestmark = pytest.mark.integration


async def test_connections_spread_evenly_over_both_workers(server: WsmonServer) -> None:
    """10 connections to an idle 2-worker pool split 5/5 (max-min <= 1) by their welcome frames,
    and each worker's wsmon_connections_active agrees with the welcomes."""
    await server.wait_active(0)
    clients = await server.connect_many(10)
    counts = clients.counts()
    assert set(counts) == {0, 1}, f"connections landed on workers {dict(counts)}"
    assert max(counts.values()) - min(counts.values()) <= 1, (
        f"unbalanced: {dict(counts)}; order of workers: {[c.worker for c in clients]}"
    )
    metrics = await server.scrape()
    for worker, held in counts.items():
        assert metrics.value("wsmon_connections_active", worker=str(worker)) == held
    assert len({client.connection_id for client in clients}) == 10, "connection ids must be unique"


async def test_every_connection_goes_to_the_least_loaded_worker(server: WsmonServer) -> None:
    """Least-loaded placement, connection by connection: opening 40 connections one after the
    other (each after the previous one's welcome), the two workers never differ by more than one.
    A supervisor that undercounts a worker's load, even briefly, puts two in a row on it."""
    await server.wait_active(0)
    held = {0: 0, 1: 0}
    order: list[int] = []
    for _ in range(40):
        client = await server.connect()
        held[client.worker] += 1
        order.append(client.worker)
        assert abs(held[0] - held[1]) <= 1, f"workers chosen, in order: {order}"


async def test_chat_crosses_workers_and_skips_the_sender(server: WsmonServer) -> None:
    """A chat reaches a room member on the other worker, with `from` = the sender's connection id
    (its user once it identified); the sender and non-members on either worker get nothing."""
    (a, outsider0), (b, outsider1) = await server.spread(per_worker=2)
    for member in (a, b):
        assert (await member.request({"type": "join", "room": "lobby"}))["type"] == "ack"

    ack = await a.request({"type": "chat", "room": "lobby", "text": "hello from 0"})
    assert ack["type"] == "ack", ack
    got = await b.delivery("chat", text="hello from 0")
    assert got == {"type": "chat", "room": "lobby", "text": "hello from 0", "from": a.connection_id}

    await b.request({"type": "chat", "room": "lobby", "text": "hello from 1"})
    got = await a.delivery("chat", text="hello from 1")
    assert got == {"type": "chat", "room": "lobby", "text": "hello from 1", "from": b.connection_id}

    await a.request({"type": "identify", "user": "alice"})
    await a.request({"type": "chat", "room": "lobby", "text": "signed"})
    assert (await b.delivery("chat", text="signed"))["from"] == "alice"

    for client in (a, b, outsider0, outsider1):
        assert await client.unclaimed() == [], f"unexpected frames on worker {client.worker}"


async def test_notify_reaches_every_connection_of_a_user_on_both_workers(
    server: WsmonServer,
) -> None:
    """notify {user} reaches all of that user's connections, one on each worker (the sender's own
    included when the sender is that user), and no other connection."""
    (bob0, sender), (bob1, other) = await server.spread(per_worker=2)
    for bob in (bob0, bob1):
        assert (await bob.request({"type": "identify", "user": "bob"}))["type"] == "ack"

    await sender.request({"type": "notify", "user": "bob", "payload": {"n": 1}})
    for bob in (bob0, bob1):
        got = await bob.delivery("notify", payload={"n": 1})
        assert got == {
            "type": "notify",
            "user": "bob",
            "payload": {"n": 1},
            "from": sender.connection_id,
        }

    await bob1.request({"type": "notify", "user": "bob", "payload": "self"})
    for bob in (bob0, bob1):
        assert (await bob.delivery("notify", payload="self"))["from"] == "bob"

    for client in (bob0, bob1, sender, other):
        assert await client.unclaimed() == [], f"unexpected frames on worker {client.worker}"


async def test_publish_reaches_subscribers_on_both_workers_only(server: WsmonServer) -> None:
    """publish {topic} reaches the other subscribers on both workers, not the publisher, not a
    non-subscriber, and no longer a connection that unsubscribed."""
    (publisher, sub0, outsider0), (sub1, witness1, outsider1) = await server.spread(per_worker=3)
    for client in (publisher, sub0, sub1, witness1):
        assert (await client.request({"type": "subscribe", "topic": "prices"}))["type"] == "ack"

    await publisher.request({"type": "publish", "topic": "prices", "payload": [1, 2]})
    for sub in (sub0, sub1, witness1):
        got = await sub.delivery("publish", payload=[1, 2])
        assert got == {
            "type": "publish",
            "topic": "prices",
            "payload": [1, 2],
            "from": publisher.connection_id,
        }

    await sub1.request({"type": "unsubscribe", "topic": "prices"})
    await publisher.request({"type": "publish", "topic": "prices", "payload": "second"})
    await sub0.delivery("publish", payload="second")
    # witness1 shares sub1's worker: once it has "second", that worker has fanned it out.
    await witness1.delivery("publish", payload="second")
    assert await sub1.unclaimed() == [], "a connection got a publish after unsubscribing"

    for client in (publisher, sub0, sub1, witness1, outsider0, outsider1):
        assert await client.unclaimed() == [], f"unexpected frames on worker {client.worker}"


async def test_broadcast_reaches_everyone_else_on_both_workers(server: WsmonServer) -> None:
    """broadcast reaches every other connection on both workers, once each, and not the sender."""
    pools = await server.spread(per_worker=2)
    everyone = [client for pool in pools for client in pool]
    sender = everyone[0]
    await sender.request({"type": "broadcast", "payload": {"alert": "fire drill"}})
    for client in everyone[1:]:
        got = await client.delivery("broadcast", payload={"alert": "fire drill"})
        assert got == {
            "type": "broadcast",
            "payload": {"alert": "fire drill"},
            "from": sender.connection_id,
        }
    # A second broadcast from the other worker: each recipient's next frame is it, not a duplicate.
    second = pools[1][0]
    await second.request({"type": "broadcast", "payload": "again"})
    for client in everyone:
        if client is not second:
            assert (await client.delivery("broadcast"))["payload"] == "again"
    for client in everyone:
        assert await client.unclaimed() == [], f"unexpected frames on worker {client.worker}"
