"""Refusals for what a client does at the handshake, against a real `wsmon serve --workers 2`: a
foreign Origin gets 403 before the upgrade, a silent TCP peer is cut at the handshake timeout, and
an address opening connections too fast is refused. Each is counted in
wsmon_handshakes_refused_total{reason}, none in wsmon_connections_rejected_total (the rejection
alert's input), and everyone else keeps being served."""

from __future__ import annotations

import asyncio
import socket
import time
from typing import TYPE_CHECKING

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidHandshake, InvalidStatus

if TYPE_CHECKING:
    from conftest import Eventually, ServerFactory

pytestmark = pytest.mark.integration


async def test_a_foreign_origin_is_refused_with_403_and_counted(wsmon: ServerFactory) -> None:
    server = wsmon("--allowed-origins", "https://app.example.com")
    before = await server.scrape()
    url = server.ws_url()
    with pytest.raises(InvalidStatus) as refused:
        await connect(url, origin="https://evil.example.net", proxy=None)  # type: ignore[arg-type]
    assert refused.value.response.status_code == 403
    for allowed in ("https://app.example.com", f"http://127.0.0.1:{server.port}", None):
        async with connect(url, origin=allowed, proxy=None) as ws:  # type: ignore[arg-type]
            assert '"welcome"' in str(await ws.recv())
    after = await server.scrape()
    assert after.delta(before, "wsmon_handshakes_refused_total", reason="origin") == 1
    assert after.delta(before, "wsmon_connections_rejected_total") == 0
    assert after.delta(before, "wsmon_connections_opened_total") == 3


async def test_a_silent_peer_is_cut_at_the_handshake_timeout(
    wsmon: ServerFactory, eventually: Eventually
) -> None:
    server = wsmon("--handshake-timeout-seconds", "1")
    before = await server.scrape()
    silent = socket.create_connection(("127.0.0.1", server.port))
    silent.settimeout(10)
    started = time.monotonic()
    # Meanwhile a real client is served at once: the silent peer holds no worker.
    client = await server.connect()
    assert client.worker in (0, 1)
    assert await asyncio.to_thread(silent.recv, 1) == b"", "the server closed the silent peer"
    waited = time.monotonic() - started
    silent.close()
    assert 0.9 <= waited < 5, waited
    after = await eventually(
        server.scrape,
        lambda m: (
            m.delta(before, "wsmon_handshakes_refused_total", reason="handshake_timeout") == 1
        ),
        within=10,
        what="the cut counted",
    )
    assert after.delta(before, "wsmon_connections_rejected_total") == 0


async def test_an_address_opening_too_fast_is_refused_and_counted(wsmon: ServerFactory) -> None:
    """A rate of 1 a second passes a burst of 10 connections, then refuses at once."""
    server = wsmon("--handshake-rate-limit", "1")
    outcomes = []
    for _ in range(15):
        try:
            async with connect(server.ws_url(), proxy=None, open_timeout=5) as ws:
                await ws.recv()
            outcomes.append("served")
        except (OSError, EOFError, InvalidHandshake):
            outcomes.append("refused")
    # The fixture's start-up check may have taken a token or two of the burst.
    assert 5 <= outcomes.count("served") <= 10, outcomes
    assert outcomes[-1] == "refused", outcomes
    await asyncio.sleep(2.1)  # two tokens more, for the scrape
    after = await server.scrape()
    assert after.value("wsmon_handshakes_refused_total", reason="rate_limited") >= outcomes.count(
        "refused"
    )
    assert after.total("wsmon_connections_rejected_total") == 0
