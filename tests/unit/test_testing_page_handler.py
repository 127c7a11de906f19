"""GET /testing: the page a browser runs the three checks from (its script: tests/integration)."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web
from support.standalone import standalone_app

from wsmon.exporter import selftest, testing_page
from wsmon.exporter.config import Settings

if TYPE_CHECKING:
    from aiohttp.test_utils import TestClient

    MakeClient = Callable[..., Awaitable[TestClient[web.Request, web.Application]]]


async def test_the_page_is_html_naming_the_three_tests(aiohttp_client: MakeClient) -> None:
    client = await aiohttp_client(standalone_app(Settings(workers=3)))
    response = await client.get("/testing")
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    page = await response.text()
    for test in ("Server test", "Connection pool test", "Echo test"):
        assert f">{test}</button>" in page, test
    for result in ("server-result", "pool-result", "echo-result"):
        assert f'id="{result}" data-result="idle" aria-live="polite"' in page, result


def test_the_server_fills_in_the_checks_figures() -> None:
    page = testing_page.page(3).decode()
    assert "{{" not in page
    assert 'data-workers="3"' in page
    assert f'data-per-worker="{selftest.DEFAULT_PER_WORKER}"' in page
    assert f'data-step-timeout="{selftest.DEFAULT_STEP_TIMEOUT:g}"' in page
    inputs = dict(re.findall(r'<input id="([\w-]+)"[^>]* value="(\d+)"', page))
    assert inputs == {
        "echo-count": str(selftest.DEFAULT_ECHO_COUNT),
        "echo-size": str(selftest.DEFAULT_ECHO_BYTES),
    }


def test_the_page_needs_nothing_but_its_own_origin() -> None:
    """No host, scheme or external resource written into the page: the WebSocket URL comes from
    `location`, so it works behind a proxy and with whatever authentication the page had."""
    page = testing_page.page(2).decode()
    assert "://" not in page
    assert not re.search(r"localhost|127\.0\.0\.1|\[::1\]", page)
    # Nothing fetched but the page: the one link is /metrics, relative; the icon is inline.
    assert re.findall(r'\b(?:src|href)="([^"]*)"', page) == ["data:,", "metrics"]
