"""/testing: the Testing tab's three checks (selftest.py) as a page the browser runs itself.

The checks run in the page's JavaScript, over the browser's own WebSocket connections to the
server the page came from (its URL is derived from `location`), so they see what a browser client
sees, proxies included, and need nothing but same-origin requests. The page (testing.html, inline
script and style, no external resources) gets the figures the checks share with `wsmon test` and
/probe filled in by the server: the pool size, connections per worker, the spread allowed, the
step timeout and the echo defaults. Rendered once per worker, on the first request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import cache
from importlib.resources import files
from typing import Final

from aiohttp import web

from . import selftest

TEMPLATE: Final = files("wsmon.exporter").joinpath("testing.html")


@cache
def page(workers: int) -> bytes:
    values = {
        "workers": workers,
        "per_worker": selftest.DEFAULT_PER_WORKER,
        "max_spread": selftest.DEFAULT_MAX_SPREAD,
        "step_timeout": selftest.DEFAULT_STEP_TIMEOUT,
        "echo_count": selftest.DEFAULT_ECHO_COUNT,
        "echo_bytes": selftest.DEFAULT_ECHO_BYTES,
    }
    # `{{name}}` markers rather than string.Template: the script's template literals use `${}`.
    text = TEMPLATE.read_text(encoding="utf-8")
    for name, value in values.items():
        text = text.replace(f"{{{{{name}}}}}", f"{value:g}")
    return text.encode()


def handler(workers: int) -> Callable[[web.Request], Awaitable[web.Response]]:
    """GET /testing for a pool of `workers` (the pool check expects every one of them)."""

    async def serve(request: web.Request) -> web.Response:
        return web.Response(body=page(workers), content_type="text/html", charset="utf-8")

    return serve
