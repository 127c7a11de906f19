"""Polling with a deadline: wait for a condition instead of sleeping and hoping."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

T = TypeVar("T")


async def eventually(
    check: Callable[[], Awaitable[T]],
    accept: Callable[[T], bool],
    *,
    within: float,
    what: str,
    interval: float = 0.05,
) -> T:
    """Await `check` until `accept(result)` holds; fail with the last result after `within` s."""
    deadline = time.monotonic() + within
    while True:
        result = await check()
        if accept(result):
            return result
        if time.monotonic() >= deadline:
            pytest.fail(f"{what}: still not true after {within:.1f}s; last value: {result!r}")
        await asyncio.sleep(interval)
