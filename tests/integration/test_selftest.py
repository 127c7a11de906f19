"""The Testing tab's checks against a real `wsmon serve --workers 2`: `wsmon test server|pool|echo`
as a user runs it (exit 0 passed, 1 failed, 2 could not run) and GET /probe as Prometheus
scrapes it (its answer accepted by `promtool check metrics`)."""

from __future__ import annotations

import asyncio
import json
import subprocess
from typing import TYPE_CHECKING

import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.processes import WSMON, free_port, stopped
from support.stack import tool

from wsmon.catalogue import PROBE_MODULES, PROBE_SPECS

if TYPE_CHECKING:
    from conftest import ServerFactory, WsmonServer

pytestmark = pytest.mark.integration


def wsmon_test(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(WSMON), "test", *argv], capture_output=True, text=True, timeout=60, check=False
    )


def probe_values(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a /probe answer: (name, sorted labels) -> value."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_every_check_passes_against_a_running_server(server: WsmonServer) -> None:
    url = server.ws_url()
    checked = wsmon_test("server", "--url", url)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"server test of {url}: PASSED" in checked.stdout
    for step in ("handshake", "welcome", "ping"):
        assert f"  {step}" in checked.stdout
    # The worker count comes from the server's /metrics (one wsmon_pool_capacity per worker).
    pooled = json.loads(wsmon_test("pool", "--url", url, "--json").stdout)
    assert pooled["success"] is True, pooled
    assert set(pooled["workers"]) == {"0", "1"}
    assert sum(pooled["workers"].values()) == 8  # 4 per worker, the default
    assert pooled["figures"]["spread"] <= 2.0
    echoed = wsmon_test("echo", "--url", url, "--count", "50", "--size", "1000", "--json")
    assert echoed.returncode == 0, echoed.stdout + echoed.stderr
    figures = json.loads(echoed.stdout)["figures"]
    assert 0 < figures["min"] <= figures["p50"] <= figures["p99"] <= figures["max"] < 1
    assert figures["min"] <= figures["avg"] <= figures["max"]


def test_a_dead_port_could_not_run_and_says_so() -> None:
    url = f"ws://127.0.0.1:{free_port()}/ws"
    for argv in (("server",), ("pool", "--workers", "2"), ("echo",)):
        result = wsmon_test(*argv, "--url", url)
        assert result.returncode == 2, (argv, result.stdout, result.stderr)
        assert "could not run: cannot connect" in result.stdout
    # Without --workers, the pool check cannot learn the worker count either.
    result = wsmon_test("pool", "--url", url)
    assert result.returncode == 2
    assert "pass --workers" in result.stderr


def test_a_stopped_worker_fails_the_pool_check(wsmon: ServerFactory) -> None:
    server = wsmon()
    with stopped(server.worker_pids()[1]):
        result = wsmon_test("pool", "--url", server.ws_url(), "--workers", "2", "--timeout", "1")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "FAILED: worker 1 got none of 8 connections" in result.stdout
    assert "worker 1   0" in result.stdout
    # Back to work, the pool passes again.
    again = wsmon_test("pool", "--url", server.ws_url(), "--workers", "2")
    assert again.returncode == 0, again.stdout


@pytest.mark.parametrize("module", PROBE_MODULES)
async def test_probe_answers_each_module_in_an_exposition_promtool_accepts(
    server: WsmonServer, module: str
) -> None:
    status, content_type, body = await server.get(f"/probe?module={module}")
    assert status == 200, body
    assert content_type.startswith("text/plain")
    checked = await asyncio.to_thread(
        subprocess.run,
        [tool("promtool"), "check", "metrics"],
        input=body,
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    values = probe_values(body)
    assert values[("wsmon_probe_success", (("probe", module),))] == 1
    assert {name for name, _ in values} <= set(PROBE_SPECS)
    if module == "pool":
        assert values[("wsmon_probe_pool_connections", (("worker", "0"),))] == 4
        assert values[("wsmon_probe_pool_connections", (("worker", "1"),))] == 4
    if module == "echo":
        figures = {dict(labels)["figure"] for name, labels in values if "round_trip" in name}
        assert figures == {"min", "avg", "p50", "p99", "max"}


async def test_an_unknown_module_is_refused_with_the_list(server: WsmonServer) -> None:
    status, _, body = await server.get("/probe?module=ping")
    assert status == 400
    assert body == "unknown module 'ping': use one of server, pool, echo\n"


async def test_a_probe_of_a_full_server_fails_cleanly(wsmon: ServerFactory) -> None:
    """Both workers full: the probe's own connection is refused with 1013, which is a failed
    probe (HTTP 200, success 0), and the server serves on."""
    server = wsmon("--worker-capacity", "1")
    held = await server.connect_many(2)
    status, _, body = await server.get("/probe?module=server")
    assert status == 200, body
    values = probe_values(body)
    assert values[("wsmon_probe_success", (("probe", "server"),))] == 0
    await held.close()
    status, _, body = await server.get("/probe?module=server")
    assert probe_values(body)[("wsmon_probe_success", (("probe", "server"),))] == 1
