"""`wsmon loadtest` over two real `wsmon serve --workers 2 --broker ...` instances and a real
redis-server between them: every chat and publish reaches its room's members on the other
instance (both directions in the breakdown, 100 %); with Redis stopped the cross-instance pairs
fail with their deliveries counted missing, while each instance still delivers to its own.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest
from support.redis import RedisServer

if TYPE_CHECKING:
    from conftest import LoadtestResult
    from support.processes import Wsmon

    Loadtest = Callable[..., LoadtestResult]

pytestmark = pytest.mark.integration

SAME, CROSS = ("0→0", "1→1"), ("0→1", "1→0")


def broker_up(server: Wsmon, up: int, within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while (value := server.scrape().value("wsmon_broker_up")) != up:
        if time.monotonic() > deadline:
            pytest.fail(f"wsmon_broker_up is {value}, not {up}, on :{server.port}:\n{server.log}")
        time.sleep(0.2)


@pytest.fixture
def instances(
    server_factory: Callable[..., Wsmon], redis_server: RedisServer
) -> tuple[Wsmon, Wsmon]:
    # A channel of the test's own: pub/sub channels are shared by every database of a Redis.
    flags = ("--broker", redis_server.url, "--broker-channel", f"lt-{secrets.token_hex(4)}")
    a, b = server_factory("--workers", "2", *flags), server_factory("--workers", "2", *flags)
    for server in (a, b):
        broker_up(server, 1)
    return a, b


def run_over(loadtest: Loadtest, a: Wsmon, b: Wsmon) -> tuple[LoadtestResult, dict[str, Any]]:
    # 40 connections alternate between the URLs: each room of 10 has 5 members on each instance.
    result = loadtest(
        *("custom", "--connections", "40", "--interval", "0.1", "--duration", "2"),
        *("--ramp-up", "0.5", "--mix", "echo=2,chat=2,publish=2", "--seed", "13", "--quiet"),
        *("--url", a.ws_url(), "--url", b.ws_url()),
    )
    assert result.report is not None, result.stdout + result.stderr
    return result, result.report


def by_pair(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f"{p['sender']}→{p['recipient']}": p for p in report["delivery"]["pairs"]}


def test_cross_instance_deliveries_all_arrive_in_both_directions(
    instances: tuple[Wsmon, Wsmon], loadtest: Loadtest
) -> None:
    result, report = run_over(loadtest, *instances)
    assert result.returncode == 0, result.stdout + result.stderr
    delivery = report["delivery"]
    assert delivery["verified_types"] == ["chat", "publish"]
    assert delivery["success_pct"] == 100.0
    assert (delivery["missing"], delivery["duplicates"], delivery["unexpected"]) == (0, 0, 0)
    pairs = by_pair(report)
    assert set(pairs) == {*SAME, *CROSS}
    for name, pair in pairs.items():
        assert pair["expected"] > 100, name
        assert pair["received"] == pair["expected"], name
        assert pair["success_pct"] == 100.0, name
    assert "  by instance  0→0 100.00 %   0→1 100.00 %   1→0 100.00 %   1→1 100.00 %" in (
        result.stdout
    )
    verdicts = {t["threshold"]: t["passed"] for t in report["thresholds"]}
    assert verdicts["delivery_success>98%"]
    assert verdicts["delivery_duplicates<1"]


def test_without_redis_cross_instance_deliveries_are_missing(
    instances: tuple[Wsmon, Wsmon], redis_server: RedisServer, loadtest: Loadtest
) -> None:
    redis_server.stop()
    for server in instances:
        broker_up(server, 0)
    result, report = run_over(loadtest, *instances)
    assert result.returncode == 1, result.stdout + result.stderr
    pairs = by_pair(report)
    for name in SAME:
        assert pairs[name]["expected"] > 100, name
        assert pairs[name]["success_pct"] == 100.0, name
    for name in CROSS:
        assert pairs[name]["expected"] > 100, name
        assert pairs[name]["received"] == 0, name
        assert pairs[name]["missing"] == pairs[name]["expected"], name
    delivery = report["delivery"]
    assert delivery["missing"] == sum(pairs[name]["expected"] for name in CROSS)
    assert delivery["duplicates"] == 0
    failed = [t["threshold"] for t in report["thresholds"] if not t["passed"]]
    assert failed == ["delivery_success>98%"]
    assert "0→1 0.00 % (" in result.stdout
    assert "1→0 0.00 % (" in result.stdout
    # The replies did not wait on the broker: the run's messages all succeeded.
    assert report["messages"]["success_pct"] == 100.0
