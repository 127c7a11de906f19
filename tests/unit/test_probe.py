"""/probe's pieces without a server: its time budget, its target, its answer, its refusals."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web
from click.testing import CliRunner
from prometheus_client.parser import text_string_to_metric_families

from wsmon.catalogue import PROBE_SPECS
from wsmon.cli import main
from wsmon.exporter import probe, selftest

if TYPE_CHECKING:
    from aiohttp.test_utils import TestClient

    MakeClient = Callable[..., Awaitable[TestClient[Any, Any]]]


def test_the_budget_is_prometheus_timeout_less_a_margin_within_bounds() -> None:
    assert probe.budget("10") == 9.5
    assert probe.budget(None) == probe.DEFAULT_BUDGET - probe.MARGIN
    assert probe.budget("not a number") == probe.DEFAULT_BUDGET - probe.MARGIN
    assert probe.budget("0.2") == 1.0
    assert probe.budget("600") == 60.0


def test_the_target_is_the_address_the_request_arrived_on() -> None:
    assert probe.target(("10.0.0.5", 8080)) == "ws://10.0.0.5:8080/ws"
    assert probe.target(("::1", 8080, 0, 0)) == "ws://[::1]:8080/ws"


def test_the_answer_names_only_catalogued_series_with_their_help() -> None:
    result = selftest.Result("pool", "ws://x/ws", success=False, seconds=0.5, error="worker 1")
    result.steps.append(selftest.Step("connect", 0.4))
    result.workers = {0: 8, 1: 0}
    result.figures = {"failed": 4.0}
    families = {f.name: f for f in text_string_to_metric_families(probe.render(result).decode())}
    assert set(families) <= set(PROBE_SPECS)
    assert all(f.documentation == PROBE_SPECS[name].help for name, f in families.items())
    samples = {
        (s.name, tuple(s.labels.values())): s.value for f in families.values() for s in f.samples
    }
    assert samples[("wsmon_probe_success", ("pool",))] == 0
    assert samples[("wsmon_probe_pool_connections", ("1",))] == 0
    assert samples[("wsmon_probe_pool_failed_connections", ())] == 4
    # No spread when a worker got none: a ratio with nothing under it is no figure.
    assert "wsmon_probe_pool_spread" not in families
    assert selftest.percentile([0.1, 0.2, 0.3, 0.4], 99) == 0.4
    assert selftest.percentile([0.1, 0.2, 0.3, 0.4], 50) == 0.2
    assert math.isclose(selftest.percentile([1.0], 1), 1.0)


async def test_an_unknown_module_is_a_400_and_a_busy_worker_a_429(
    aiohttp_client: MakeClient,
) -> None:
    prober = probe.Prober(workers=2)
    app = web.Application()
    app.router.add_get("/probe", prober.serve)
    client = await aiohttp_client(app)
    response = await client.get("/probe?module=nope")
    assert response.status == 400
    assert await response.text() == "unknown module 'nope': use one of server, pool, echo\n"
    response = await client.get("/probe")
    assert response.status == 400
    prober._running = probe.MAX_CONCURRENT  # as if two probes were under way
    response = await client.get("/probe?module=echo")
    assert response.status == 429


def test_wsmon_test_refuses_a_url_that_is_not_a_websocket() -> None:
    result = CliRunner().invoke(main, ["test", "echo", "--url", "http://127.0.0.1:8080/ws"])
    assert result.exit_code == 2
    assert "expected ws://HOST:PORT/ws" in result.output
