"""The HTTP endpoints next to /ws: liveness, readiness, the health document, /ws/echo, the
runbooks page and the content negotiation of /metrics."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import aiohttp
import pytest

from wsmon.thresholds import DEFAULT_THRESHOLDS, load

if TYPE_CHECKING:
    from conftest import WsmonServer

pytestmark = pytest.mark.integration

STATUSES = {"healthy", "degraded", "unhealthy"}


async def test_healthz_and_readyz_answer_200(server: WsmonServer) -> None:
    """/healthz (alive) and /readyz (accepting) are 200 on an idle pool; unknown paths are 404."""
    assert (await server.get("/healthz"))[0] == 200
    status, _, body = await server.get("/readyz")
    assert status == 200, body
    assert (await server.get("/no-such-page"))[0] == 404


async def test_api_health_reports_a_status_and_its_checks(server: WsmonServer) -> None:
    """/api/health is JSON with `status` in healthy|degraded|unhealthy and a list of checks, each
    with its own name and status; the overall status is the worst check's, and the workers check
    sees both workers running (so an idle pool is healthy)."""
    status, content_type, body = await server.get("/api/health")
    assert content_type.startswith("application/json"), content_type
    document = json.loads(body)
    assert document["status"] in STATUSES, document
    assert status == (503 if document["status"] == "unhealthy" else 200)
    checks = document["checks"]
    assert isinstance(checks, list), document
    assert checks, document
    for check in checks:
        assert isinstance(check["name"], str), check
        assert check["status"] in STATUSES, check
    rank = ["healthy", "degraded", "unhealthy"]
    assert document["status"] == max((c["status"] for c in checks), key=rank.index)
    workers = {c["name"]: c for c in checks}["workers"]
    assert (workers["status"], workers["value"]) == ("healthy", 2), workers
    assert document["status"] == "healthy", document


async def test_ws_echo_returns_text_and_binary_frames_verbatim(server: WsmonServer) -> None:
    """/ws/echo sends no welcome and returns each text and binary frame exactly as sent, in order,
    including non-JSON text, non-ASCII text, empty frames and 50 KB of binary."""
    client = await server.connect("/ws/echo", welcome=False)
    frames: list[str | bytes] = [
        "plain text, not JSON",
        '{"type": "echo"}',
        "héllo wörld ✓",
        "",
        b"\x00\x01\x02\xff",
        bytes(range(256)) * 200,
        b"",
    ]
    for frame in frames:
        await client.send_raw(frame)
    echoed = [await client.recv_raw() for _ in frames]
    assert echoed == frames


async def test_metrics_speaks_prometheus_text_and_openmetrics(server: WsmonServer) -> None:
    """/metrics is Prometheus text by default and OpenMetrics (ending in `# EOF`) when asked."""
    status, content_type, body = await server.get("/metrics")
    assert status == 200
    assert content_type.startswith("text/plain"), content_type
    assert "# TYPE wsmon_connections_active gauge" in body

    async with (
        aiohttp.ClientSession() as session,
        session.get(
            server.base_url + "/metrics", headers={"Accept": "application/openmetrics-text"}
        ) as response,
    ):
        text = await response.text()
        assert response.headers["Content-Type"].startswith("application/openmetrics-text")
    assert text.endswith("# EOF\n"), text[-200:]


async def test_runbooks_page_has_the_anchor_of_every_alert(server: WsmonServer) -> None:
    """Every alert's runbook_url (http://INSTANCE/runbooks#alertname) leads to a section here."""
    status, content_type, body = await server.get("/runbooks")
    assert status == 200
    assert content_type.startswith("text/html"), content_type
    assert "<title>wsmon runbooks</title>" in body
    names = [threshold.name for threshold in load(DEFAULT_THRESHOLDS)]
    assert names
    for name in names:
        assert f'<h2 id="{name.lower()}">{name}</h2>' in body, name
