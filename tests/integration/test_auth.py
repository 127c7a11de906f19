"""Authentication and authorisation against a real `wsmon serve --auth-jwt-secret-file`: tokens at
the handshake (header or subprotocol), 401 before the upgrade, the token's user, the admin role
for broadcast and the admin surfaces, room prefixes, and a close with 4001 at expiry."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import jwt
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

if TYPE_CHECKING:
    from conftest import Eventually, ServerFactory, WsmonServer

pytestmark = pytest.mark.integration

SECRET = "s3cret-for-tests-only-0123456789abcdef"


@pytest.fixture
def server(wsmon: ServerFactory, tmp_path: Path) -> WsmonServer:
    path = tmp_path / "jwt.secret"
    path.write_text(SECRET + "\n")
    return wsmon("--auth-jwt-secret-file", str(path))


def token(user: str, *roles: str, expires_in: float = 300, **claims: Any) -> str:
    payload = {"sub": user, "roles": list(roles), "exp": int(time.time() + expires_in), **claims}
    return jwt.encode(payload, SECRET, algorithm="HS256")


async def open_as(
    server: WsmonServer, bearer: str, *, subprotocol: bool = False
) -> ClientConnection:
    if subprotocol:
        ws = await connect(server.ws_url(), proxy=None, subprotocols=["wsmon.bearer", bearer])  # type: ignore[list-item]
    else:
        ws = await connect(
            server.ws_url(), proxy=None, additional_headers={"Authorization": f"Bearer {bearer}"}
        )
    welcome = json.loads(await ws.recv())
    assert welcome["type"] == "welcome", welcome
    return ws


async def request(ws: ClientConnection, message: dict[str, Any]) -> dict[str, Any]:
    await ws.send(json.dumps(message))
    reply: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), 5))
    return reply


async def refused(server: WsmonServer, headers: dict[str, str]) -> InvalidStatus:
    with pytest.raises(InvalidStatus) as caught:
        await connect(server.ws_url(), proxy=None, additional_headers=headers)
    return caught.value


async def test_a_handshake_without_a_good_token_is_refused_before_the_upgrade(
    server: WsmonServer,
) -> None:
    before = await server.scrape()
    expired = token("alice", expires_in=-60)
    forged = jwt.encode(
        {"sub": "alice", "exp": int(time.time()) + 60},
        "another secret, more than 32 bytes long",
        algorithm="HS256",
    )
    cases = {
        "none": ({}, 'Bearer realm="wsmon"'),
        "garbage": ({"Authorization": "Bearer not-a-token"}, 'error_description="invalid"'),
        "forged": ({"Authorization": f"Bearer {forged}"}, 'error_description="invalid"'),
        "expired": ({"Authorization": f"Bearer {expired}"}, 'error_description="expired"'),
    }
    for name, (headers, challenge) in cases.items():
        error = await refused(server, headers)
        assert error.response.status_code == 401, name
        assert challenge in error.response.headers["WWW-Authenticate"], name
    after = await server.scrape()
    assert after.delta(before, "wsmon_handshakes_refused_total", reason="unauthenticated") == 4
    assert after.delta(before, "wsmon_connections_opened_total") == 0
    assert after.delta(before, "wsmon_connections_rejected_total") == 0  # never paged on
    for secret in (expired, forged):
        assert secret not in server.log, "a token reached the log"


async def test_the_tokens_user_is_the_connections_and_identify_cannot_change_it(
    server: WsmonServer,
) -> None:
    alice = await open_as(server, token("alice"), subprotocol=True)
    assert alice.subprotocol == "wsmon.bearer"
    bob = await open_as(server, token("bob"))
    refusal = await request(bob, {"type": "identify", "user": "alice", "id": 1})
    assert (refusal["type"], refusal["code"], refusal["ref"]) == ("error", "forbidden", 1)
    assert await request(bob, {"type": "notify", "user": "alice", "payload": "hi", "id": 2}) == {
        "type": "ack",
        "id": 2,
    }
    delivered = json.loads(await asyncio.wait_for(alice.recv(), 5))
    assert (delivered["type"], delivered["from"], delivered["payload"]) == ("notify", "bob", "hi")
    await alice.close()
    await bob.close()


async def test_broadcast_needs_the_admin_role_and_rooms_follow_the_token(
    server: WsmonServer,
) -> None:
    before = await server.scrape()
    user = await open_as(server, token("carol", rooms=["team-"]))
    admin = await open_as(server, token("root", "admin"))
    denied = await request(user, {"type": "broadcast", "payload": "all", "id": 1})
    assert (denied["code"], denied["ref"]) == ("forbidden", 1)
    assert await request(admin, {"type": "broadcast", "payload": "all", "id": 2}) == {
        "type": "ack",
        "id": 2,
    }
    heard = json.loads(await asyncio.wait_for(user.recv(), 5))
    assert (heard["type"], heard["from"]) == ("broadcast", "root")
    outside = await request(user, {"type": "join", "room": "other", "id": 3})
    assert (outside["code"], outside["ref"]) == ("forbidden", 3)
    assert await request(user, {"type": "join", "room": "team-blue", "id": 4}) == {
        "type": "ack",
        "id": 4,
    }
    after = await server.scrape()
    refused = "wsmon_client_errors_total"
    assert after.delta(before, refused, type="broadcast", reason="forbidden") == 1
    assert after.delta(before, refused, type="join", reason="forbidden") == 1
    await user.close()
    await admin.close()


async def test_a_token_that_expires_while_connected_closes_with_4001(
    server: WsmonServer, eventually: Eventually
) -> None:
    before = await server.scrape()
    ws = await open_as(server, token("dave", expires_in=2))
    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (4001, "token expired")
    await eventually(
        server.scrape,
        lambda m: m.delta(before, "wsmon_connections_closed_total", code="4001") == 1,
        within=10,
        what="the close counted by its code",
    )


async def test_the_admin_surfaces_need_the_admin_role(server: WsmonServer) -> None:
    base = server.base_url
    admin, user = token("root", "admin"), token("erin")
    basic = base64.b64encode(f"anyone:{admin}".encode()).decode()
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        async with session.get(f"{base}/probe?module=echo") as response:
            assert response.status == 401
        async with session.get(
            f"{base}/probe?module=echo", headers={"Authorization": f"Bearer {user}"}
        ) as response:
            assert response.status == 403
        # The probe's own connections get in with the pool's probe key, no operator token.
        async with session.get(
            f"{base}/probe?module=echo", headers={"Authorization": f"Bearer {admin}"}
        ) as response:
            assert response.status == 200
            assert 'wsmon_probe_success{probe="echo"} 1.0' in await response.text()
        async with session.get(f"{base}/testing") as response:
            assert response.status == 401
            assert response.headers["WWW-Authenticate"].startswith('Basic realm="wsmon admin"')
        async with session.get(
            f"{base}/testing", headers={"Authorization": f"Basic {basic}"}
        ) as response:
            assert response.status == 200
        # Plain health stays open: load balancers and Prometheus' /metrics scrape need no token.
        for path in ("/healthz", "/readyz", "/api/health", "/metrics"):
            async with session.get(f"{base}{path}") as response:
                assert response.status == 200, path
