"""`wsmon loadtest --source-address A --source-address B` connects from those addresses in turn:
against a server that caps connections per address at 10, 20 connections from one address have
half refused (429), and the same 20 from two addresses all get in. The report gives the load
generator's own memory per connection."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import LoadtestResult
    from support.processes import Wsmon

    Loadtest = Callable[..., LoadtestResult]

pytestmark = pytest.mark.integration

RUN = ("custom", "--connections", "20", "--interval", "0.2", "--duration", "1", "--ramp-up", "0")


def test_connections_come_from_each_source_address_in_turn(
    server_factory: Callable[..., Wsmon], loadtest: Loadtest
) -> None:
    server = server_factory("--workers", "2", "--max-connections-per-address", "10")
    one = loadtest(*RUN, "--mix", "echo=1", "--quiet", "--url", server.ws_url())
    assert one.report is not None, one.stderr
    # At most 10: the load generator's probe of the target, a moment before, may still hold a
    # place until its worker reports it closed.
    assert 9 <= one.report["connection"]["succeeded"] <= 10, one.report["connection"]
    sources = ("--source-address", "127.0.0.2", "--source-address", "127.0.0.3")
    two = loadtest(*RUN, "--mix", "echo=1", "--quiet", "--url", server.ws_url(), *sources)
    assert two.report is not None, two.stderr
    assert two.report["connection"]["succeeded"] == 20, two.report["connection"]
    cpu = two.report["cpu"]
    assert cpu["rss_peak_bytes"] >= cpu["rss_start_bytes"] > 0
    assert cpu["rss_per_connection_bytes"] is not None
    assert "loadgen RSS" in two.stdout
    assert "KiB per connection" in two.stdout


def test_a_source_that_is_no_address_is_a_usage_error(loadtest: Loadtest) -> None:
    done = loadtest(*RUN, "--source-address", "localhost")
    assert done.returncode == 2
    assert "'localhost' is not an IP address" in done.stderr
