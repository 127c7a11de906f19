"""Per-process figures on /metrics: resident memory, open descriptors, CPU seconds and start time
of each worker and of the supervisor, checked against what /proc tells the test itself."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

import aiohttp
import pytest
from support.metrics import Metrics

from wsmon.loadgen.bench.procs import cpu_seconds, rss_bytes

if TYPE_CHECKING:
    from conftest import Eventually, ServerFactory, WsmonServer

pytestmark = pytest.mark.integration

FAMILIES = (
    "wsmon_process_resident_memory_bytes",
    "wsmon_process_open_fds",
    "wsmon_process_cpu_seconds_total",
    "wsmon_process_start_time_seconds",
)
CPU_TOLERANCE = 0.05  # s: /proc/PID/stat counts 10 ms ticks, and the scrape itself costs a little


class Scraper:
    """Scrapes over one kept-alive HTTP connection. That connection is a descriptor of whichever
    worker serves it, so it must already be open when the test lists descriptors, as it is from
    the first scrape on: a fresh connection per scrape would add one to some worker's count."""

    def __init__(self, server: WsmonServer, session: aiohttp.ClientSession) -> None:
        self.server = server
        self.session = session

    async def scrape(self) -> Metrics:
        async with self.session.get(self.server.base_url + "/metrics") as response:
            assert response.status == 200
            return Metrics.parse(await response.text())

    def pids(self) -> dict[str, int]:
        """Worker label -> pid, as the test finds them in /proc."""
        found = {str(index): pid for index, pid in self.server.worker_pids().items()}
        return {**found, "supervisor": self.server.pid}

    async def fds(self) -> tuple[Metrics, dict[str, float], dict[str, float]]:
        """A scrape, the descriptors /proc lists for each process right before it, and those the
        scrape reports."""
        listed = {w: float(len(os.listdir(f"/proc/{pid}/fd"))) for w, pid in self.pids().items()}
        scrape = await self.scrape()
        reported = {w: scrape.value("wsmon_process_open_fds", worker=w) for w in listed}
        return scrape, listed, reported


@pytest.fixture
async def scraper(server: WsmonServer) -> AsyncIterator[Scraper]:
    connector = aiohttp.TCPConnector(limit=1)  # one connection, reused by every scrape
    async with aiohttp.ClientSession(connector=connector) as session:
        scraper = Scraper(server, session)
        await scraper.scrape()
        yield scraper


async def test_every_process_has_its_series(scraper: Scraper) -> None:
    """Worker 0, worker 1 and the supervisor each have all four series, with figures that are
    theirs: resident memory as /proc/PID/statm has it, start times in the order the processes
    started (workers after the supervisor) and not in the future."""
    scrape = await scraper.scrape()
    for family in FAMILIES:
        assert set(scrape.series(family)) == {
            frozenset({("worker", w)}) for w in ("0", "1", "supervisor")
        }, family
    for worker, pid in scraper.pids().items():
        rss = scrape.value("wsmon_process_resident_memory_bytes", worker=worker)
        assert abs(rss - rss_bytes([pid])) <= 0.1 * rss, (worker, rss, rss_bytes([pid]))
    started = {
        w: scrape.value("wsmon_process_start_time_seconds", worker=w)
        for w in ("0", "1", "supervisor")
    }
    # btime is a whole second and start times count 10 ms ticks from it: allow for both.
    assert started["supervisor"] <= min(started["0"], started["1"]) + 0.02, started
    assert time.time() - 600 < started["supervisor"] <= time.time() + 1, started


async def test_open_fds_is_what_proc_lists(scraper: Scraper, eventually: Eventually) -> None:
    """For each worker, wsmon_process_open_fds equals the count of /proc/PID/fd the test lists
    just before the scrape. A connection closed by an earlier test can still be on its way out,
    so the two are polled until they agree; a wrong figure never does."""

    async def compare() -> tuple[dict[str, float], dict[str, float]]:
        _, listed, reported = await scraper.fds()
        return {w: listed[w] for w in ("0", "1")}, {w: reported[w] for w in ("0", "1")}

    await eventually(compare, lambda pair: pair[0] == pair[1], within=5, what="fds as listed")


async def test_open_fds_rises_with_connections(
    scraper: Scraper, server: WsmonServer, eventually: Eventually
) -> None:
    """Ten more WebSocket connections on each worker: its wsmon_process_open_fds rises by at
    least ten, and still equals what /proc lists."""

    async def agreed() -> dict[str, float]:
        _, listed, reported = await scraper.fds()
        return reported if all(listed[w] == reported[w] for w in ("0", "1")) else {}

    before = await eventually(agreed, bool, within=5, what="fds as listed, before")
    pools = await server.spread(per_worker=10)
    after = await eventually(agreed, bool, within=5, what="fds as listed, after")
    for worker in ("0", "1"):
        assert after[worker] - before[worker] >= 10, (worker, before, after)
    for pool in pools:
        await pool.close()


async def test_cpu_seconds_move_under_load(scraper: Scraper, server: WsmonServer) -> None:
    """5,000 echo round trips on one worker: its wsmon_process_cpu_seconds_total moves by as much
    as the scheduler's own count of its threads' run time (schedstat, nanoseconds) says it ran,
    within the ticks' rounding."""
    client = await server.connect()
    worker = str(client.worker)
    pid = scraper.pids()[worker]
    ran_before, before = cpu_seconds([pid]), await scraper.scrape()
    for n in range(5000):
        await client.request({"type": "echo", "n": n})
    ran_after, after = cpu_seconds([pid]), await scraper.scrape()
    moved = after.delta(before, "wsmon_process_cpu_seconds_total", worker=worker)
    ran = ran_after - ran_before
    assert ran >= 0.1, f"5,000 echoes took only {ran:.3f}s of worker CPU"
    assert abs(moved - ran) <= CPU_TOLERANCE + 0.1 * ran, (moved, ran)


async def test_a_restarted_workers_figures_are_the_new_process(
    wsmon: ServerFactory, eventually: Eventually
) -> None:
    """kill -9 worker 1: once it is restarted, its series describe the new process (a later start
    time, its own descriptors), not the dead one's last figures."""
    server = wsmon()
    old_pid = server.worker_pids()[1]
    before = await server.scrape()
    os.kill(old_pid, signal.SIGKILL)

    async def restarted() -> dict[int, int]:
        return server.worker_pids()

    await eventually(restarted, lambda p: p.get(1, old_pid) != old_pid, within=5, what="restart")

    async def scrape() -> Metrics:
        return await server.scrape()

    after = await eventually(
        scrape,
        lambda m: m.total("wsmon_workers_alive") == 2,
        within=5,
        what="worker 1 back in the pool",
    )
    start = "wsmon_process_start_time_seconds"
    assert after.value(start, worker="1") > before.value(start, worker="1")
    assert after.value(start, worker="0") == before.value(start, worker="0")
