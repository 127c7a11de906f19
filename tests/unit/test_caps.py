"""Connection caps: the supervisor's tally per address and per user, and the per-user cap at the
handshake of a standalone worker (429 before the upgrade, counted, freed when a connection ends)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import jwt
import pytest
from aiohttp import WSServerHandshakeError, web
from support.standalone import standalone_app

from wsmon.exporter.caps import LOOSE, Tally
from wsmon.exporter.config import Settings

if TYPE_CHECKING:
    from aiohttp.test_utils import TestClient

    Client = TestClient[web.Request, web.Application]
    MakeClient = Callable[..., Awaitable[Client]]

SECRET = "0123456789abcdef0123456789abcdef-caps-test"


def test_a_key_is_refused_at_its_cap_until_one_is_released() -> None:
    tally = Tally(2)
    assert tally.claim("10.0.0.1", 0)
    assert tally.claim("10.0.0.1", 1)
    assert not tally.claim("10.0.0.1", 0), "the third is over the cap"
    assert tally.claim("10.0.0.2", 0), "another key has a cap of its own"
    tally.release("10.0.0.1", 1)
    assert tally.open("10.0.0.1") == 1
    assert tally.claim("10.0.0.1", 1)


def test_a_dead_holder_frees_exactly_what_it_held() -> None:
    tally = Tally(3)
    for holder in (0, 0, 1):
        assert tally.claim("alice", holder)
    tally.forget(0)
    assert tally.open("alice") == 1
    # Its late report frees nothing more: the claims it names were forgotten with it.
    tally.release_all({"alice": 2}, 0)
    assert tally.open("alice") == 1


def test_a_claim_moves_from_the_supervisor_to_a_worker() -> None:
    tally = Tally(1)
    assert tally.claim("10.0.0.1", LOOSE)
    tally.move("10.0.0.1", LOOSE, 3)
    tally.forget(LOOSE)
    assert tally.open("10.0.0.1") == 1, "the worker holds it now"
    tally.release("10.0.0.1", 3)
    assert tally.open("10.0.0.1") == 0


def test_a_cap_of_zero_admits_everyone_and_counts_nothing() -> None:
    tally = Tally(0)
    assert all(tally.claim("10.0.0.1", 0) for _ in range(1000))
    assert tally.open("10.0.0.1") == 0


@pytest.fixture
async def client(aiohttp_client: MakeClient, tmp_path: Path) -> Client:
    secret = tmp_path / "jwt.secret"
    secret.write_text(SECRET)
    settings = Settings(workers=1, auth_jwt_secret_file=str(secret), max_connections_per_user=2)
    return await aiohttp_client(standalone_app(settings))


def bearer(user: str) -> dict[str, str]:
    token = jwt.encode({"sub": user, "exp": int(time.time()) + 600}, SECRET, "HS256")
    return {"Authorization": f"Bearer {token}"}


async def test_a_user_over_the_cap_gets_429_and_the_others_are_served(client: Client) -> None:
    first = await client.ws_connect("/ws", headers=bearer("alice"))
    second = await client.ws_connect("/ws/echo", headers=bearer("alice"))  # echo counts too
    with pytest.raises(WSServerHandshakeError) as refused:
        await client.ws_connect("/ws", headers=bearer("alice"))
    assert refused.value.status == 429
    assert refused.value.headers is not None
    assert refused.value.headers["Retry-After"] == "5"
    bob = await client.ws_connect("/ws", headers=bearer("bob"))
    await first.close()
    third = await client.ws_connect("/ws", headers=bearer("alice"))
    metrics = await (await client.get("/metrics")).text()
    assert 'wsmon_handshakes_refused_total{reason="user_limit"} 1.0' in metrics
    for ws in (second, bob, third):
        await ws.close()
