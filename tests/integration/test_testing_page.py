"""/testing in a real browser: Debian's headless Chromium, driven by Playwright, against the server.

The page's checks run in the browser's JavaScript over its own WebSocket connections, so only a
browser tests them. Playwright drives the system chromium (never a browser it downloads), and
the page may request nothing but the server it came from.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import jwt
import pytest
from playwright.async_api import Browser, Page, async_playwright
from support.processes import CHROMIUM_FLAGS, stopped

if TYPE_CHECKING:
    from conftest import Client, ServerFactory, WsmonServer

pytestmark = pytest.mark.integration

# Longer than the page's own deadline for one check (4 steps of 5 s), so the page decides.
VERDICT_MS = 25_000


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    binary = shutil.which("chromium")
    assert binary, "chromium is missing: `make tools` installs the Debian package"
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=binary, headless=True, args=list(CHROMIUM_FLAGS)
        )
        yield launched
        await launched.close()


async def open_page(browser: Browser, server: WsmonServer) -> tuple[Page, list[str]]:
    """The page, and every URL it requested (HTTP and WebSocket) as the tests go on."""
    page = await browser.new_page()
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.on("websocket", lambda websocket: requested.append(websocket.url))
    response = await page.goto(f"{server.base_url}/testing")
    assert response is not None
    assert response.status == 200
    return page, requested


async def run(page: Page, test: str, button: str) -> tuple[str, str]:
    """Click a test's button and wait for its verdict: (data-result, the result's text)."""
    await page.get_by_role("button", name=button, exact=True).click()
    result = page.locator(f"#{test}-result")
    await page.wait_for_function(
        f"!['idle', 'running'].includes(document.getElementById('{test}-result').dataset.result)",
        timeout=VERDICT_MS,
    )
    return str(await result.get_attribute("data-result")), await result.inner_text()


async def figures(page: Page, test: str) -> dict[str, float]:
    cells = page.locator(f"#{test}-result [data-figure]")
    return {
        str(await cell.get_attribute("data-figure")): float(await cell.inner_text())
        for cell in await cells.all()
    }


async def test_the_three_tests_pass_against_a_running_server(
    browser: Browser, server: WsmonServer
) -> None:
    page, requested = await open_page(browser, server)
    target = await page.locator("#target").inner_text()
    assert target == server.ws_url("/ws")  # from the page's location: no host in the page

    verdict, text = await run(page, "server", "Server test")
    assert verdict == "passed", text
    assert text.startswith("PASSED"), text
    steps = await figures(page, "server")
    assert list(steps) == ["handshake", "welcome", "ping"], text
    assert all(ms >= 0 for ms in steps.values()), steps

    verdict, text = await run(page, "pool", "Connection pool test")
    assert verdict == "passed", text
    workers = page.locator("#pool-result tr[data-worker]")
    per_worker = {
        str(await row.get_attribute("data-worker")): await row.locator("td").inner_text()
        for row in await workers.all()
    }
    assert per_worker == {"0": "4", "1": "4"}, text
    pooled = await figures(page, "pool")
    assert pooled["failed"] == 0, pooled
    assert pooled["spread"] == 1.0, pooled

    verdict, text = await run(page, "echo", "Echo test")
    assert verdict == "passed", text
    assert "20 round trips of a 64-byte payload" in text, text
    trips = await figures(page, "echo")
    assert list(trips) == ["min", "avg", "p50", "p99", "max"], text
    assert 0 <= trips["min"] <= trips["p50"] <= trips["p99"] <= trips["max"], trips
    assert trips["min"] <= trips["avg"] <= trips["max"], trips

    await page.get_by_label("Messages").fill("5")
    await page.get_by_label("Payload bytes").fill("1000")
    verdict, text = await run(page, "echo", "Echo test")
    assert verdict == "passed", text
    assert "5 round trips of a 1000-byte payload" in text, text

    # 1 + 8 + 1 + 1 WebSockets, every one to the server itself; nothing else fetched but the page.
    assert [url for url in requested if url.startswith("ws:")] == [server.ws_url("/ws")] * 11
    assert [url for url in requested if not url.startswith("ws:")] == [
        f"{server.base_url}/testing"
    ], requested


async def test_a_stopped_worker_fails_the_pool_test_by_name(
    browser: Browser, wsmon: ServerFactory
) -> None:
    server = wsmon()
    page, _ = await open_page(browser, server)
    # Chromium opens a server's WebSockets one at a time, so the page can name the stopped worker
    # only if its first connection reaches the other one: worker 1 is made the busier (the
    # hand-off picks the least-loaded, worker 0 on a tie; the page's HTTP connection counts too).
    held: list[Client] = []  # closed after the test, as every client (conftest)
    for _ in range(10):
        client = await server.connect()
        if client.worker == 1:
            held.append(client)
        else:
            await client.close()
        if len(held) == 2:
            break
    assert len(held) == 2, "no two connections on worker 1"
    await server.wait_active(2)
    await asyncio.sleep(0.2)  # the workers report closed connections to the hand-off a bit later
    with stopped(server.worker_pids()[1]):
        verdict, text = await run(page, "pool", "Connection pool test")
    assert verdict == "failed", text
    reason = await page.locator("#pool-result .reason").inner_text()
    assert reason.startswith("worker 1 got none of 8 connections"), reason
    assert "no handshake within 5 s" in reason, reason
    assert await page.locator('#pool-result tr[data-worker="1"] td').inner_text() == "0"


async def test_a_full_server_fails_the_server_test_with_1013(
    browser: Browser, wsmon: ServerFactory
) -> None:
    server = wsmon("--worker-capacity", "1")
    page, _ = await open_page(browser, server)
    held = await server.connect_many(2)
    verdict, text = await run(page, "server", "Server test")
    assert verdict == "failed", text
    reason = await page.locator("#server-result .reason").inner_text()
    assert reason == "the server is at capacity: closed with 1013 before the welcome", reason
    assert list(await figures(page, "server")) == ["handshake"], text
    await held.close()


async def test_with_authentication_on_the_page_logs_in_and_its_tests_pass(
    browser: Browser, wsmon: ServerFactory, tmp_path: Path
) -> None:
    """/testing is an admin surface: the browser asks for credentials (Basic, the admin token as
    the password), and sends them on the page's own WebSockets too, so its tests pass."""
    secret = "s3cret-for-tests-only-0123456789abcdef"
    (tmp_path / "jwt.secret").write_text(secret)
    server = wsmon("--auth-jwt-secret-file", str(tmp_path / "jwt.secret"))
    admin = jwt.encode(
        {"sub": "root", "roles": ["admin"], "exp": int(time.time()) + 600}, secret, "HS256"
    )
    # (Without credentials it is a 401 with a Basic challenge: tests/integration/test_auth.py.)
    context = await browser.new_context(http_credentials={"username": "admin", "password": admin})
    page = await context.new_page()
    response = await page.goto(f"{server.base_url}/testing")
    assert response is not None
    assert response.status == 200
    verdict, text = await run(page, "server", "Server test")
    assert verdict == "passed", text
    verdict, text = await run(page, "echo", "Echo test")
    assert verdict == "passed", text
    await context.close()
