"""The supervisor's hand-off queue on /metrics: wsmon_handoff_queued (waiting now) and
wsmon_handoff_queued_max (the most at once), driven through a real hand-off socket that fills."""

from __future__ import annotations

import asyncio
import contextlib
import socket

import pytest

from wsmon.exporter import gate as gate_module
from wsmon.exporter import handoff as handoff_module
from wsmon.exporter.caps import Tally
from wsmon.exporter.config import Settings
from wsmon.exporter.control import PUBLIC
from wsmon.exporter.gate import Gate
from wsmon.exporter.handoff import Handoff
from wsmon.exporter.metrics import Cell, values
from wsmon.exporter.pool import Slot
from wsmon.exporter.pool_metrics import PoolMetrics


def gauges(metrics: PoolMetrics) -> tuple[float, float]:
    snapshot = metrics.last_known()
    (queued,) = values(snapshot, "wsmon_handoff_queued")
    (most,) = values(snapshot, "wsmon_handoff_queued_max")
    assert queued.labels == most.labels == ("0",)
    return queued.value, most.value


async def test_the_queue_and_its_high_water_mark_follow_a_full_handoff_socket() -> None:
    slot = Slot(0)
    metrics = PoolMetrics([slot])
    handoff = Handoff(Settings(), [slot], Tally(0), metrics.no_worker, metrics.refused)
    assert gauges(metrics) == (0, 0)  # at rest: both series exist, at 0
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    parent.setblocking(False)
    parent.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    slot.handoff, slot.alive = parent, True
    peers = []
    try:
        while not slot.queued:  # until the worker's socket is full and one waits
            conn, peer = socket.socketpair()
            peers.append(peer)
            handoff._hand_off(conn, "127.0.0.1", PUBLIC)
        for _ in range(4):
            conn, peer = socket.socketpair()
            peers.append(peer)
            handoff._hand_off(conn, "127.0.0.1", PUBLIC)
        assert gauges(metrics) == (5, 5)
        # The worker takes what it was sent; the supervisor flushes the rest as room appears.
        child.setblocking(False)
        taken = 0
        for _ in range(200):
            try:
                _, fds, _, _ = socket.recv_fds(child, 1024, 1)
            except BlockingIOError:
                if not slot.queued and taken == len(peers):
                    break
                await asyncio.sleep(0.01)
                continue
            for fd in fds:
                socket.close(fd)
            taken += 1
        assert taken == len(peers)
        assert gauges(metrics) == (0, 5)  # the peak stays: a storm's falls between scrapes
    finally:
        handoff.release(slot)
        parent.close()
        child.close()
        for peer in peers:
            peer.close()


async def test_with_every_queue_full_accepts_are_held_until_one_is_half_empty(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A storm: past what the queues take, the supervisor stops accepting (new connections wait
    in the kernel's backlog) rather than refuse what it accepted, and accepts again once a
    worker has taken half of its queue."""
    monkeypatch.setattr(handoff_module, "MAX_QUEUED_HANDOFFS", 4)
    slot = Slot(0)
    metrics = PoolMetrics([slot])
    handoff = Handoff(
        Settings(port=0, handshake_rate_limit=0),
        [slot],
        Tally(0),
        metrics.no_worker,
        metrics.refused,
    )
    handoff.listen()
    handoff.start()
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    parent.setblocking(False)
    child.setblocking(False)
    parent.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    slot.handoff, slot.alive = parent, True
    peers = []
    try:
        while len(slot.queued) < 4:
            conn, peer = socket.socketpair()
            peers.append(peer)
            handoff._hand_off(conn, "127.0.0.1", PUBLIC)
        assert handoff._held == {handoff_module.QUEUES_FULL}
        assert metrics.no_worker.value == 0, "nothing refused"
        # The worker takes its connections; the queue drains and accepting resumes.
        for _ in range(200):
            with contextlib.suppress(BlockingIOError):
                for fd in socket.recv_fds(child, 1024, 1)[1]:
                    socket.close(fd)
            if not handoff._held:
                break
            await asyncio.sleep(0.01)
        assert handoff._held == set()
        assert len(slot.queued) < 2
    finally:
        handoff.close()
        handoff.release(slot)
        parent.close()
        child.close()
        for peer in peers:
            peer.close()


async def test_with_too_many_silent_connections_accepts_are_held(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Past MAX_WAITING connections waiting for their first byte the supervisor stops accepting
    (it used to refuse the next ones as handshake_timeout) until some have spoken or been cut."""
    monkeypatch.setattr(gate_module, "MAX_WAITING", 3)
    held: list[str] = []
    released: list[str] = []
    handed: list[socket.socket] = []
    gate = Gate(
        0,
        10.0,
        Tally(0),
        {reason: Cell() for reason in ("rate_limited", "handshake_timeout", "address_limit")},
        lambda conn, address, listener: handed.append(conn),
        (held.append, released.append),
    )
    pairs = [socket.socketpair() for _ in range(3)]
    try:
        for ours, _ in pairs:
            ours.setblocking(False)
            gate.admit(ours, "127.0.0.1", PUBLIC)
        assert held == [gate_module.CROWDED]
        # Two speak: handed over, and with one left waiting (under nine tenths) room again.
        for _, theirs in pairs[:2]:
            theirs.send(b"GET / HTTP/1.1\r\n")
        for _ in range(100):
            if len(handed) == 2:
                break
            await asyncio.sleep(0.01)
        assert handed == [pairs[0][0], pairs[1][0]]
        assert released == [gate_module.CROWDED]
    finally:
        gate.close()
        for ours, theirs in pairs:
            ours.close()
            theirs.close()
