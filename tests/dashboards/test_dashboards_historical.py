"""Every panel of the Historical dashboard answers over its 30 days, from 35 backfilled days.

The dashboard reads raw series only (recording rules exist only from when Prometheus loaded
them). The test writes 35 days of exactly the series its expressions read (backfill), turns them
into TSDB blocks with `promtool tsdb create-blocks-from openmetrics`, starts Prometheus on them
and runs every target as Grafana would over the default range, now-30d to now: the step Grafana
picks for a 30-day panel (30m), $__rate_interval from it, one instance and All. Week-over-week
(`offset 1w`), daily peaks, per-day increases and the predict_linear trend must all return data.
"""

from __future__ import annotations

import time
from pathlib import Path

import aiohttp
import pytest
from backfill import (
    DAY,
    INSTANCE,
    JOB,
    Written,
    create_blocks,
    literal_values,
    specs_read,
    write,
)
from grafana_queries import (
    Choice,
    Dashboard,
    Prometheus,
    Window,
    load_dashboards,
    options,
    report,
    require_data,
    run_all,
)
from support.stack import REPO, Stack, prometheus_config

pytestmark = pytest.mark.integration

HISTORICAL = REPO / "dashboards" / "generated" / "wsmon-historical.json"
SPAN = 35 * DAY
# Every 150 s: a `[5m]` window anywhere holds at least two samples, which rate() needs (the
# dashboard's daily peaks take rate over 5m, as for a real 15-60 s scrape); 35 days of the
# Historical series is then ~1M samples, written and imported in a few seconds.
SAMPLE_INTERVAL = 150
# Retention counts back from the newest sample: 40 days keeps all 35 (a retention of 30d would
# delete the oldest blocks, and with them the week before the range that `offset 1w` reads).
RETENTION = "40d"
# Prometheus's default evaluation interval: the resolution of a subquery such as `[1d:]`.
EVALUATION_INTERVAL = "1m"


def historical() -> Dashboard:
    (dashboard,) = [d for d in load_dashboards(HISTORICAL.parent) if d.path == HISTORICAL]
    return dashboard


def backfill(dashboard: Dashboard, source: Path, data: Path, end: float) -> Written:
    """The series the dashboard (and its variables) read, as TSDB blocks in `data`."""
    exprs = [t.expr for t in dashboard.targets()] + [
        str(v.get("query", "")) for v in dashboard.variables
    ]
    with source.open("w") as out:
        written = write(out, specs_read(exprs), literal_values(exprs), end, SPAN, SAMPLE_INTERVAL)
    create_blocks(source, data)
    return written


@pytest.mark.timeout(120)
async def test_every_historical_panel_answers_over_30_days_of_history(
    stack: Stack, tmp_path: Path
) -> None:
    dashboard = historical()
    assert dashboard.targets(), "the Historical dashboard has no queries"
    end = time.time()
    written = backfill(dashboard, tmp_path / "wsmon.om", tmp_path / "data", end)
    config = prometheus_config(tmp_path / "prometheus.yml", {}, interval=EVALUATION_INTERVAL)
    _, url = stack.prometheus(
        config, tmp_path / "data", f"--storage.tsdb.retention.time={RETENTION}"
    )
    # The data source's scrape interval is the backfill's sample interval, as it would be set.
    window = Window(end - 30 * DAY, time.time(), scrape_interval=SAMPLE_INTERVAL)
    choices = {"job": Choice((JOB,)), "instance": Choice((INSTANCE,))}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        prometheus = Prometheus(session, url)
        # Every series is there 34 days back: retention kept what `offset 1w` reads at the start.
        (oldest,) = await prometheus.query(f'count({{job="{JOB}"}})', end - 34 * DAY)
        assert int(oldest["value"][1]) == written.series, "Prometheus lost some of the oldest days"
        assert await options(prometheus, dashboard, "job", choices, window) == [JOB]
        assert await options(prometheus, dashboard, "instance", choices, window) == [INSTANCE]
        selections = {
            f"instance={INSTANCE}": choices,
            "instance=All": {**choices, "instance": Choice((INSTANCE,), all=True)},
        }
        outcomes = await run_all(prometheus, [dashboard], window, selections)
    print(f"backfill: {written.series} series, {written.samples} samples")
    print(report(outcomes, [dashboard]))
    require_data(outcomes, [dashboard])
