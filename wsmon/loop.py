"""Run a coroutine on uvloop where it is installed, else on asyncio's default loop.

A bare aiohttp echo server answered 24-34k messages a second on uvloop against 19k on the default
loop, measured before wsmon was written (docs/performance.md); every later figure there is on
uvloop. The fallback keeps the load generator usable where uvloop is not installed (Windows).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any


def run(main: Coroutine[Any, Any, None]) -> None:
    try:
        import uvloop
    except ImportError:
        asyncio.run(main)
        return
    uvloop.run(main)
