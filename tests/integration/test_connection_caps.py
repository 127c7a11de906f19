"""Connection caps against a real `wsmon serve --workers 2`: one address, or one token's user,
holding its cap of connections across both workers gets 429 for one more, counted by reason;
a connection that ends, or a worker that dies, gives its place back."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING

import jwt
import pytest
from support.metrics import Metrics
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

if TYPE_CHECKING:
    from conftest import Eventually, ServerFactory, WsmonServer

pytestmark = pytest.mark.integration

SECRET = "s3cret-for-the-caps-tests-0123456789abcdef"


async def opened(server: WsmonServer, headers: dict[str, str] | None = None) -> ClientConnection:
    """A /ws connection, its welcome read; `worker_of` says which worker holds it."""
    ws = await connect(server.ws_url(), proxy=None, additional_headers=headers, open_timeout=5)
    welcome = json.loads(await ws.recv())
    assert welcome["type"] == "welcome", welcome
    _workers[ws] = welcome["worker"]
    return ws


_workers: dict[ClientConnection, int] = {}


def worker_of(ws: ClientConnection) -> int:
    return _workers[ws]


async def reopened(
    server: WsmonServer, eventually: Eventually, headers: dict[str, str] | None = None
) -> tuple[ClientConnection, int]:
    """A connection once the place a closed one held is back (the worker reports an end within
    a few milliseconds; until then one more is still over the cap), and how many were refused
    meanwhile."""
    refusals = 0

    async def attempt() -> ClientConnection | None:
        nonlocal refusals
        try:
            return await opened(server, headers)
        except InvalidStatus as exc:
            if exc.response.status_code != 429:
                raise
            refusals += 1
            return None

    ws = await eventually(attempt, lambda ws: ws is not None, within=5, what="a place back")
    assert ws is not None
    return ws, refusals


async def scraped_when_free(server: WsmonServer, eventually: Eventually) -> tuple[Metrics, int]:
    """/metrics, once the test's connections have ended (a scrape is one more connection from
    the same address, refused while the address is at its cap), and how many were refused."""
    refusals = 0

    async def attempt() -> Metrics | None:
        nonlocal refusals
        status, _, body = await server.get("/metrics")
        if status == 429:
            refusals += 1
            return None
        assert status == 200, body
        return Metrics.parse(body)

    metrics = await eventually(attempt, lambda m: m is not None, within=5, what="a scrape")
    assert metrics is not None
    return metrics, refusals


async def refused(server: WsmonServer, headers: dict[str, str] | None = None) -> InvalidStatus:
    with pytest.raises(InvalidStatus) as caught:
        await connect(server.ws_url(), proxy=None, additional_headers=headers, open_timeout=5)
    return caught.value


async def test_an_address_at_its_cap_gets_429_until_a_connection_ends(
    wsmon: ServerFactory, eventually: Eventually
) -> None:
    server = wsmon("--max-connections-per-address", "4")
    before = await server.scrape()  # the scrape's own connection has ended by the next step
    held = [await opened(server) for _ in range(4)]
    assert {worker_of(ws) for ws in held} == {0, 1}, "the cap is the pool's, not one worker's"
    answer = await refused(server)
    assert answer.response.status_code == 429
    assert answer.response.headers["Retry-After"] == "5"
    assert b"too many open connections" in answer.response.body
    await held.pop().close()
    again, retries = await reopened(server, eventually)
    await asyncio.gather(*(ws.close() for ws in [*held, again]))
    after, scrapes_refused = await scraped_when_free(server, eventually)
    refusals = after.delta(before, "wsmon_handshakes_refused_total", reason="address_limit")
    # The one above, the reopening's retries, and the scrapes refused while the address was full.
    assert refusals == 1 + retries + scrapes_refused
    assert after.delta(before, "wsmon_connections_rejected_total") == 0


async def test_a_worker_that_dies_gives_back_its_connections_places(
    wsmon: ServerFactory, eventually: Eventually
) -> None:
    server = wsmon("--max-connections-per-address", "6")
    held = [await opened(server) for _ in range(6)]
    victim = server.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    # Its clients are cut; the other worker's stay. The cap counts only what is still open.
    await eventually(
        lambda: _open_count(held),
        lambda n: n <= 5,
        within=10,
        what="the killed worker's clients closed",
    )
    survivors = [ws for ws in held if ws.state.name == "OPEN"]
    await eventually(
        lambda: _fill(server, 6 - len(survivors)),
        bool,
        within=15,
        what="every place the dead worker held given back",
    )
    await asyncio.gather(*(ws.close() for ws in survivors))


async def _open_count(held: list[ClientConnection]) -> int:
    await asyncio.sleep(0.1)
    return sum(ws.state.name == "OPEN" for ws in held)


async def _fill(server: WsmonServer, places: int) -> bool:
    """Open `places` connections and one more: all but the last let in (True), or False while
    some place is still held (a restarting worker's hand-off, a report on its way)."""
    opened_now = []
    try:
        for _ in range(places):
            opened_now.append(await opened(server))
        answer = await refused(server)
    except (InvalidStatus, OSError):
        return False
    finally:
        await asyncio.gather(*(ws.close() for ws in opened_now))
    assert answer.response.status_code == 429
    return True


def bearer(user: str) -> dict[str, str]:
    token = jwt.encode({"sub": user, "exp": int(time.time()) + 600}, SECRET, "HS256")
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def authenticated(wsmon: ServerFactory, tmp_path: Path) -> WsmonServer:
    path = tmp_path / "jwt.secret"
    path.write_text(SECRET)
    return wsmon("--auth-jwt-secret-file", str(path), "--max-connections-per-user", "3")


async def test_a_user_at_its_cap_across_workers_gets_429_and_others_are_served(
    authenticated: WsmonServer, eventually: Eventually
) -> None:
    server = authenticated
    before = await server.scrape()
    alice = [await opened(server, bearer("alice")) for _ in range(3)]
    # The least-loaded hand-off spreads them: the cap is the pool's, not one worker's.
    assert {worker_of(ws) for ws in alice} == {0, 1}
    answer = await refused(server, bearer("alice"))
    assert answer.response.status_code == 429
    assert b"this user holds 3 connections" in answer.response.body
    bob = await opened(server, bearer("bob"))
    await alice.pop().close()
    again, retries = await reopened(server, eventually, bearer("alice"))
    await asyncio.gather(*(ws.close() for ws in [*alice, again, bob]))
    after = await server.scrape()
    assert after.delta(before, "wsmon_handshakes_refused_total", reason="user_limit") == 1 + retries
    assert after.delta(before, "wsmon_connections_rejected_total") == 0
