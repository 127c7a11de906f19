"""`promtool check metrics` is silent on a live scrape that has every kind of series in it."""

from __future__ import annotations

import asyncio
import shutil
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import WsmonServer

pytestmark = pytest.mark.integration

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"


async def test_promtool_check_metrics_is_silent_on_a_live_scrape(server: WsmonServer) -> None:
    """After traffic of every kind (replies, deliveries on both workers, errors, a refused
    binary frame), the exposition passes `promtool check metrics` with no output and exit 0:
    counter names end in _total, histograms are well formed, every family has HELP and TYPE."""
    (a,), (b,) = await server.spread(per_worker=1)
    for client in (a, b):
        await client.request({"type": "join", "room": "lint"})
    await a.request({"type": "chat", "room": "lint", "text": "hi"})
    await b.delivery("chat", text="hi")
    await b.request({"type": "broadcast", "payload": 1})
    await a.delivery("broadcast")
    await a.request({"type": "echo"})
    await a.send_raw("not json")
    await a.take(lambda f: f.get("code") == "invalid_json")
    await b.send_raw(b"binary")
    await b.take(lambda f: f.get("code") == "binary_frame")

    scrape = await server.scrape()
    for family in (
        "wsmon_client_errors_total",
        "wsmon_message_latency_seconds_bucket",
        "wsmon_broadcast_recipients_bucket",
        "wsmon_delivery_latency_seconds_count",
        "wsmon_build_info",
    ):
        assert scrape.series(family), f"{family} missing from the scrape being checked"

    process = await asyncio.create_subprocess_exec(
        PROMTOOL,
        "check",
        "metrics",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(scrape.text.encode()), 30)
    report = (out + err).decode()
    assert (process.returncode, report) == (0, ""), f"promtool check metrics said:\n{report}"
