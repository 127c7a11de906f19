"""The worker's garbage-collector policy (exporter/heap.py): held connections frozen out of the
full passes, their cycles collected once enough of them have closed, and every pause timed."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Iterator

import pytest

from wsmon.exporter import heap
from wsmon.exporter.heap import HeldObjects, PauseTimer
from wsmon.exporter.metrics import WorkerMetrics


class Handler:
    """Stands for aiohttp's protocol object: a connection's objects refer to each other."""

    def __init__(self) -> None:
        self.parts: list[object] = [self, {"transport": self}]


def frozen(obj: object) -> bool:
    """Out of the collector's passes: tracked, yet in none of its three generations."""
    return gc.is_tracked(obj) and not any(o is obj for o in gc.get_objects())


@pytest.fixture(autouse=True)
def unfrozen() -> Iterator[None]:
    """The policy freezes the test process's heap: give it back to the collector afterwards."""
    yield
    gc.unfreeze()


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(heap, "FREEZE_DELAY", 0.01)
    monkeypatch.setattr(heap, "SWEEP_FLOOR", 10)


def arriving(count: int) -> tuple[HeldObjects, list[Handler]]:
    """A started policy told of `count` new connections."""
    held = HeldObjects(asyncio.get_running_loop())
    held.start()
    handlers = [Handler() for _ in range(count)]
    for handler in handlers:
        held.opened(handler)
    return held, handlers


async def test_connections_are_frozen_a_moment_after_they_arrive(quick: None) -> None:
    _, handlers = arriving(50)
    assert not any(frozen(h) for h in handlers)  # not yet: a burst is frozen in one go
    await asyncio.sleep(0.05)
    assert all(frozen(h) and frozen(h.parts) for h in handlers)


async def test_garbage_is_collected_before_the_freeze(quick: None) -> None:
    held = HeldObjects(asyncio.get_running_loop())
    held.start()
    gone = Handler()  # a cycle nobody holds: it must not be frozen with the connections
    dead = weakref.ref(gone)
    del gone
    held.opened(Handler())
    await asyncio.sleep(0.05)
    assert dead() is None


async def test_closed_frozen_connections_are_swept_once_a_quarter_have_closed(quick: None) -> None:
    held, handlers = arriving(100)
    await asyncio.sleep(0.05)  # frozen
    closing = [handlers.pop() for _ in range(19)]
    alive = [weakref.ref(h) for h in closing]
    for handler in closing:
        held.closed(handler)
    del closing, handler
    await asyncio.sleep(0.01)
    # 19 closed, 81 still held: under a quarter, and frozen cycles are out of every pass.
    gc.collect()
    assert all(ref() is not None for ref in alive)
    last = handlers.pop()
    alive.append(weakref.ref(last))
    held.closed(last)
    del last
    await asyncio.sleep(0.01)  # 20 closed, 80 held: the sweep runs
    assert all(ref() is None for ref in alive)
    assert all(frozen(h) for h in handlers)  # the survivors frozen again


async def test_a_connection_closed_before_the_freeze_does_not_count_towards_a_sweep(
    quick: None,
) -> None:
    held, handlers = arriving(40)
    await asyncio.sleep(0.05)
    closing = handlers.pop()
    kept = weakref.ref(closing)
    held.closed(closing)
    del closing
    for _ in range(50):  # short-lived connections: young garbage, the collector's own business
        brief = Handler()
        held.opened(brief)
        held.closed(brief)
    del brief
    await asyncio.sleep(0.05)
    gc.collect()
    # One frozen connection closed, under SWEEP_FLOOR (10): no sweep, so its cycle is still there.
    assert kept() is not None


async def test_a_draining_worker_neither_freezes_nor_sweeps(quick: None) -> None:
    held, handlers = arriving(40)
    held.stop()  # before the freeze that was due
    await asyncio.sleep(0.05)
    assert not any(frozen(h) for h in handlers)
    held.start()  # what the worker holds is frozen, by hand
    refs = [weakref.ref(h) for h in handlers]
    for handler in handlers:
        held.closed(handler)  # every one of them: far past a quarter
    del handlers, handler
    await asyncio.sleep(0.05)
    assert all(ref() is not None for ref in refs)  # no sweep ran: their cycles are still there


def test_every_collection_is_timed_by_generation() -> None:
    metrics = WorkerMetrics(0, 10)
    timer = PauseTimer(metrics)
    timer.install()
    try:
        gc.collect(0)
        gc.collect(2)
        gc.collect(2)
    finally:
        gc.callbacks.remove(timer)
    counts = {g: sum(h.counts) for g, h in metrics.gc_pause.items()}
    assert counts["2"] == 2
    assert counts["0"] >= 1
    assert metrics.gc_pause["2"].sum > 0
