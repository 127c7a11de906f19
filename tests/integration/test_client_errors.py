"""Issue 8: health judges the service, not its clients.

One client floods bad input over 10 connections while 20 others behave, on a real
`wsmon serve --workers 2`. Its errors are counted as client errors, exactly; the service's own
failure counter stays at 0 and message success at 100 %, so /api/health reads `degraded` (the
client-error warning) with HTTP 200, never `unhealthy` with 503: a load balancer keeps the
instance.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Client, ServerFactory

pytestmark = pytest.mark.integration

BAD_CONNECTIONS = 10
GOOD_CONNECTIONS = 20
BAD_PER_CONNECTION = 90  # well under the 1000 a second rate limit: no rate_limited to muddy it
GOOD_ROUNDS = 10  # each a ping, an echo and a chat, after one join
# frame, the error code it earns; all are counted under type="invalid"
BAD_FRAMES: list[tuple[str | bytes, str]] = [
    ("not json", "invalid_json"),
    ('{"type": "teleport", "id": 1}', "unknown_type"),
    (b"\x00\x01 binary on /ws", "binary_frame"),
]


async def flood(client: Client) -> Counter[str]:
    """Send BAD_PER_CONNECTION bad frames at once, then read an error for each: codes seen."""
    frames = [BAD_FRAMES[n % len(BAD_FRAMES)][0] for n in range(BAD_PER_CONNECTION)]
    for frame in frames:
        await client.send_raw(frame)
    codes: Counter[str] = Counter()
    for _ in frames:
        reply = await client.recv()
        assert reply["type"] == "error", reply
        codes[reply["code"]] += 1
    return codes


async def behave(client: Client) -> int:
    """Join the lobby, then ping, echo and chat; every answer must be the right one. Returns the
    number of messages sent."""
    assert (await client.request({"type": "join", "room": "lobby"}))["type"] == "ack"
    for n in range(GOOD_ROUNDS):
        assert (await client.request({"type": "ping"}))["type"] == "pong"
        echoed = await client.request({"type": "echo", "n": n})
        assert (echoed["type"], echoed["n"]) == ("echo", n)
        ack = await client.request({"type": "chat", "room": "lobby", "text": f"hi {n}"})
        assert ack["type"] == "ack", ack
    return 1 + 3 * GOOD_ROUNDS


async def test_one_client_flooding_bad_input_neither_fails_health_nor_counts_as_failure(
    wsmon: ServerFactory,
) -> None:
    server = wsmon()  # a fresh pool: its counters and health window hold this test alone
    abusive = await server.connect_many(BAD_CONNECTIONS)
    good = await server.connect_many(GOOD_CONNECTIONS)
    before = await server.scrape()

    results = await asyncio.gather(
        *(flood(client) for client in abusive), *(behave(client) for client in good)
    )
    codes = sum(results[:BAD_CONNECTIONS], Counter[str]())
    good_sent = sum(results[BAD_CONNECTIONS:])
    bad_sent = BAD_CONNECTIONS * BAD_PER_CONNECTION
    expected_codes = Counter(BAD_FRAMES[n % len(BAD_FRAMES)][1] for n in range(BAD_PER_CONNECTION))
    assert codes == Counter({code: n * BAD_CONNECTIONS for code, n in expected_codes.items()})

    after = await server.scrape()
    assert after.delta(before, "wsmon_messages_received_total") == bad_sent + good_sent
    assert after.delta(before, "wsmon_client_errors_total") == bad_sent
    for code, count in codes.items():
        moved = after.delta(before, "wsmon_client_errors_total", type="invalid", reason=code)
        assert moved == count, f"client_errors_total{{reason={code}}} moved by {moved}"
    # Bound at start-up on every worker, so present, and 0: the server failed nothing.
    assert after.series("wsmon_message_failures_total"), "failure counters are not exported"
    assert after.total("wsmon_message_failures_total") == 0

    status, _, body = await server.get("/api/health")
    document = json.loads(body)
    checks = {check["name"]: check for check in document["checks"]}
    assert (status, document["status"]) == (200, "degraded"), body
    assert (checks["message_success_rate"]["value"], checks["message_success_rate"]["status"]) == (
        1.0,
        "healthy",
    )
    assert checks["message_error_rate"]["value"] == 0.0
    client_errors = checks["client_error_ratio"]
    assert client_errors["value"] == pytest.approx(bad_sent / (bad_sent + good_sent))
    assert client_errors["status"] == "degraded"
    unhappy = {name for name, check in checks.items() if check["status"] != "healthy"}
    assert unhappy == {"client_error_ratio"}, body
