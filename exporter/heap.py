"""Keeps a worker's long-held objects out of the garbage collector's full passes, and times its
pauses.

CPython runs a full collection whenever the objects that survived into its oldest generation have
grown by a quarter since the last one, and a full pass walks every object the process holds. A
worker holding 14,000 connections holds some 630,000 objects for them, so while connections opened
every worker ran a full pass every 2-4 s, each longer than the last: 0.1 to 1.4 s of wall time
with seven workers on two cores, every connection of the worker stalled meanwhile, and nothing
collected (issue 14, measured with a gc.callbacks timer: docs/performance.md).

A connection lives for minutes or hours, so walking it finds nothing. A moment (FREEZE_DELAY)
after connections arrive, the worker collects what is not frozen yet (only what came since the
last freeze) and freezes the survivors: gc.freeze moves them to the collector's permanent
generation, which it never walks. A closed connection leaves reference cycles behind (one
worker's full pass collected 626,642 objects when its 14,000 connections closed), and frozen
cycles are never collected. So once frozen connections amounting to a quarter of those still held
(and at least SWEEP_FLOOR) have closed since the last sweep, the worker unfreezes, runs one full
pass and freezes again: the pass CPython would have run, now only when there is garbage to find.

Measured at 100,000 connections (`make bench ARGS="--only crowd"`, seven workers on two cores,
wall time): the longest collection while the connections opened fell from 1.5 s to within 0.2 s,
and the collections' time summed over the workers from 48.5 s to 11.3 s (docs/performance.md).
"""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any, Final

from .metrics import Histogram, WorkerMetrics

# Seconds after a connection arrives. Short, so that each freeze collects little and CPython's own
# passes in between find little unfrozen: while 100,000 connections opened, the workers spent
# 11.3 s in collections with 0.1 s, 17.7-34.0 s with 1 s (`make bench ARGS="--only crowd"`,
# column "GC s opening"; docs/performance.md, fourth round).
FREEZE_DELAY: Final = 0.1
# Closed frozen connections a sweep waits for at least: their cycles stay in memory until then
# (some 15 KiB each), and a sweep walks the whole heap, so not one every few closes.
SWEEP_FLOOR: Final = 1000


class PauseTimer:
    """Times every collection (gc.callbacks) into wsmon_gc_pause_seconds, by generation."""

    def __init__(self, metrics: WorkerMetrics) -> None:
        self._by_generation: list[Histogram] = [
            metrics.gc_pause[str(generation)] for generation in range(3)
        ]
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self._by_generation[info["generation"]].observe(time.perf_counter() - self._started)

    def install(self) -> None:
        gc.callbacks.append(self)


class HeldObjects:
    """Freezes what a worker holds once its connections have arrived; sweeps once enough of the
    frozen ones have closed. Told of every connection the worker takes on, and of its end."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        # Connections that arrived since the last freeze, by their protocol object: a close
        # among them leaves young garbage, which the collector's usual passes find.
        self._young: set[object] = set()
        self._held = 0
        self._frozen_closed = 0
        self._freeze_due: asyncio.TimerHandle | None = None
        self._sweep_due: asyncio.Handle | None = None
        self._stopped = False

    def start(self) -> None:
        """Freeze what the process holds once it is ready (modules, the application)."""
        self.freeze()

    def opened(self, connection: object) -> None:
        self._held += 1
        self._young.add(connection)
        if self._freeze_due is None and not self._stopped:
            self._freeze_due = self._loop.call_later(FREEZE_DELAY, self.freeze)

    def closed(self, connection: object) -> None:
        self._held -= 1
        if connection in self._young:
            self._young.discard(connection)
            return
        self._frozen_closed += 1
        due = max(SWEEP_FLOOR, self._held // 4)
        if self._frozen_closed >= due and self._sweep_due is None and not self._stopped:
            self._sweep_due = self._loop.call_soon(self.sweep)

    def freeze(self) -> None:
        """Collect what is not frozen yet, and freeze what survives."""
        self._freeze_due = None
        gc.collect()
        gc.freeze()
        self._young.clear()

    def sweep(self) -> None:
        """One full pass over everything, the closed connections' cycles included."""
        self._sweep_due = None
        gc.unfreeze()
        self.freeze()
        self._frozen_closed = 0

    def stop(self) -> None:
        """No more freezes or sweeps: the worker is draining, and its heap goes with it."""
        self._stopped = True
        for handle in (self._freeze_due, self._sweep_due):
            if handle is not None:
                handle.cancel()
