"""The broker's bookkeeping without a Redis: what is counted lost, what is queued and for how
many, what a foreign message on the channel does, and that a password never reaches a log."""

from __future__ import annotations

from time import perf_counter
from typing import Any

import pytest

from wsmon.exporter import broker
from wsmon.exporter.broker import DISCONNECTED, MAX_PENDING, OVERFLOW, Broker, BrokerMetrics
from wsmon.exporter.control import ControlChannel
from wsmon.exporter.metrics import Registry


def make(received: list[tuple[dict[str, Any], bytes]]) -> Broker:
    return Broker(
        "redis://127.0.0.1:1/0",
        "",
        "test",
        BrokerMetrics(Registry()),
        lambda header, body: received.append((header, body)),
    )


HEADER = {"op": "relay", "type": "chat", "route": "room", "name": "lobby", "t": 1.0}


def test_while_disconnected_every_delivery_is_counted_lost_and_nothing_queued() -> None:
    link = make([])
    for _ in range(3):
        link.publish(HEADER, b"payload")
    assert link.metrics.lost[DISCONNECTED].value == 3
    assert link.metrics.published.value == 0


async def test_past_the_bound_the_newest_are_counted_lost_as_overflow() -> None:
    link = make([])
    link._publishing = True  # as while connected, with a publisher that has fallen behind
    for _ in range(MAX_PENDING + 5):
        link.publish(HEADER, b"x")
    assert link.metrics.lost[OVERFLOW].value == 5
    assert len(link._pending) == MAX_PENDING


def test_another_instances_delivery_is_relayed_with_this_hosts_clock() -> None:
    received: list[tuple[dict[str, Any], bytes]] = []
    link = make(received)
    frame = ControlChannel.encode({**HEADER, "i": "another", "p": 123.0}, b"body")
    link._received(frame)
    ((header, body),) = received
    assert body == b"body"
    assert "i" not in header
    assert "p" not in header
    assert header["t"] != 1.0, "latency on this instance counts from the receipt"
    assert link.metrics.received.value == 1


def test_its_own_delivery_is_timed_and_not_delivered_again() -> None:
    received: list[tuple[dict[str, Any], bytes]] = []
    link = make(received)
    link._received(ControlChannel.encode({**HEADER, "i": link.instance, "p": perf_counter()}))
    assert received == []
    assert link.metrics.received.value == 0
    assert sum(link.metrics.delay.counts) == 1


@pytest.mark.parametrize(
    "data",
    [b"", b"hello", b"\x00\x00\x00\x05\x00\x00\x00\x09{}", ControlChannel.encode({"op": "x"})],
    ids=["empty", "text", "bad lengths", "no instance"],
)
def test_a_foreign_message_on_the_channel_is_ignored(data: bytes) -> None:
    received: list[tuple[dict[str, Any], bytes]] = []
    link = make(received)
    link._received(data)
    assert received == []
    assert link.metrics.received.value == 0


def test_a_password_in_the_url_is_never_shown() -> None:
    assert broker.shown("redis://:s3cret@redis:6379/0") == "redis://:***@redis:6379/0"
    assert broker.shown("rediss://app:s3cret@redis:6380/1") == "rediss://app:***@redis:6380/1"
    assert broker.shown("redis://redis:6379/0") == "redis://redis:6379/0"
