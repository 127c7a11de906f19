"""Polling with a deadline: wait for a condition instead of sleeping and hoping.

`eventually` is for async tests (it yields to the event loop between checks), `wait_until` for
plain ones that have nothing else to run meanwhile.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import NoReturn, TypeVar

import pytest

T = TypeVar("T")


def _give_up(what: str, within: float, result: object) -> NoReturn:
    pytest.fail(f"{what}: still not true after {within:.1f}s; last value: {result!r}")


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
            _give_up(what, within, result)
        await asyncio.sleep(interval)


def wait_until(
    check: Callable[[], T],
    accept: Callable[[T], bool],
    *,
    within: float,
    what: str,
    interval: float = 0.05,
) -> T:
    """Call `check` until `accept(result)` holds; fail with the last result after `within` s."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if accept(result):
            return result
        if time.monotonic() >= deadline:
            _give_up(what, within, result)
        time.sleep(interval)
