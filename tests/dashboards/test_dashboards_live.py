"""Every panel of every generated dashboard shows data from a live, loaded, misbehaving pool.

Real processes on 127.0.0.1: two instances, `wsmon serve --workers 2` and `--workers 1`, with a
real redis-server as their broker (`--broker`, so the broker's panels have deliveries published,
received from the other instance and timed, and the by-instance panels two instances side by
side); `wsmon loadtest custom` against the first with chat, publish and notify in its mix
(fan-outs within and across workers and instances); raw `websockets` clients on both sending
bad input (invalid JSON, an unknown type, binary frames) and broadcasts; Prometheus scraping wsmon,
Alertmanager and itself every second with the generated recording and alert rules, and wsmon's
/probe with the deploy bundle's own probe job (the Testing dashboard); Alertmanager with the
generated config and an SMTP sink. The rules are the generated ones with one change:
WsmonClientErrorRatioHigh fires without waiting (`for: 0s`); its rate window stays 5m because the
window is part of the recording rules' names, which the dashboards query.

The bad input fires that warning; `wsmon alerts ack` silences it, so Alertmanager's own series
(suppressed alerts, active silences) have something to count; every probe has passed and left its
figures (echo round trips, the pool's spread) under that load. Then every target of every panel
runs as Grafana would run it (grafana_queries: variables substituted, step and $__rate_interval
as Grafana computes them) over the window since scraping began, for one instance, two instances
(an alternation) and All, and each must return at least one sample.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import yaml
from grafana_queries import (
    Choice,
    Dashboard,
    Prometheus,
    Window,
    load_dashboards,
    options,
    parse_duration,
    report,
    require_data,
    run_all,
)
from support.processes import HOST, WSMON, free_port
from support.redis import RedisServer
from support.stack import (
    REPO,
    SCRAPE_INTERVAL,
    SmtpSink,
    Stack,
    eventually,
    prometheus_config,
    write_alerting,
    wsmon_alerts,
)
from websockets.asyncio.client import ClientConnection, connect

from wsmon.alerting import build
from wsmon.catalogue import PROBE_MODULES

pytestmark = pytest.mark.integration

GENERATED = REPO / "dashboards" / "generated"
# Its panels look back days and weeks (offset 1w, [7d:1h], increase over 1d), which a test's
# minute of live data cannot answer: test_dashboards_historical runs it on 35 backfilled days.
HISTORICAL = "wsmon-historical"
WARNING = "WsmonClientErrorRatioHigh"  # client_error_ratio > 5 %: bad input alone fires it
# 40 connections: wsmon:worker_imbalance:ratio is only judged from 10 per worker up.
CONNECTIONS = 40
LOAD = (
    *("--connections", str(CONNECTIONS), "--interval", "0.25", "--ramp-up", "2"),
    # Longer than the test: the load runs until the queries are done, then stops with the stack.
    *("--duration", "600", "--mix", "echo=5,chat=2,publish=2,notify=1", "--seed", "9"),
    *("--no-report", "--quiet"),
)
# Each bad client sends 3 refused frames every 0.1 s: 60/s from two, against the load's 160
# messages/s, far past the 5 % warning. One broadcast a second from each fans out to everyone.
BAD_FRAMES: tuple[str | bytes, ...] = ("not json", '{"type":"no_such_type"}', b"\x00binary")
BAD_PAUSE = 0.1
BROADCAST_EVERY = 10
# The second instance's clients: one bad client, which broadcasts too, so the first receives
# deliveries from it through the broker.
OTHER_BAD_CLIENTS = 1
# An instance no target has: selected with the real one, it makes `$instance` an alternation.
ABSENT_INSTANCE = f"{HOST}:1"
# What Prometheus scrapes. The Alerts dashboard selects Alertmanager's series with
# job="alertmanager" (the mixin's alertmanagerSelector) and reads Prometheus' own
# scrape_duration_seconds.
JOBS = ("wsmon", "alertmanager", "prometheus")
DEPLOY_PROMETHEUS = REPO / "deploy" / "prometheus" / "prometheus.yml"
# The probe job's scrape interval and timeout. A probe gets the scrape timeout less 0.5 s, a
# step of it a quarter of that (exporter/probe.py): the test's 1 s would leave each step 0.25 s,
# little for the pool check's 8 connections at once on a loaded, shared machine; 3 s leaves it
# 0.625 s and still runs every probe several times in the test's window.
PROBE_INTERVAL = "3s"
# Each wait (scrapes up, the load connected, the alert fired, its silence seen) is seconds long;
# this leaves room for a slow, shared machine.
STEADY_TIMEOUT = 30.0


async def misbehave(url: str, stop: asyncio.Event) -> int:
    """A raw client sending only what wsmon refuses, plus broadcasts; frames sent, at the end."""
    sent = 0
    async with connect(url) as ws:
        assert json.loads(await ws.recv())["type"] == "welcome"
        reader = asyncio.create_task(drain(ws))
        try:
            for batch in itertools.count():
                if stop.is_set():
                    break
                frames = list(BAD_FRAMES)
                if batch % BROADCAST_EVERY == 0:
                    frames.append(json.dumps({"type": "broadcast", "payload": {"batch": batch}}))
                for frame in frames:
                    await ws.send(frame)
                sent += len(frames)
                await asyncio.sleep(BAD_PAUSE)
        finally:
            reader.cancel()
    return sent


async def drain(ws: ClientConnection) -> None:
    """Read every reply and delivery, so the server never sees this client as a slow consumer."""
    async for _ in ws:
        pass


@contextlib.asynccontextmanager
async def bad_input(*urls: str) -> AsyncIterator[None]:
    """One misbehaving client per URL (a URL twice: two clients there)."""
    stop = asyncio.Event()
    tasks = [asyncio.create_task(misbehave(url, stop)) for url in urls]
    try:
        yield
    finally:
        stop.set()
        sent = await asyncio.gather(*tasks)
        assert all(sent), f"a bad client sent nothing: {sent}"


def live_dashboards() -> list[Dashboard]:
    dashboards = load_dashboards(GENERATED)
    assert HISTORICAL in {d.uid for d in dashboards}, f"no {HISTORICAL} in {GENERATED}"
    return [d for d in dashboards if d.uid != HISTORICAL]


async def scalar(prometheus: Prometheus, expr: str) -> float | None:
    result = await prometheus.query(expr, time.time())
    return float(result[0]["value"][1]) if result else None


@pytest.mark.timeout(150)
async def test_every_panel_has_data_under_load_bad_input_and_an_acknowledged_alert(
    stack: Stack, tmp_path: Path
) -> None:
    dashboards = live_dashboards()
    sink = SmtpSink()
    sink.start()
    redis = RedisServer()
    redis.start()
    try:
        overrides = {"alertmanager": {"groupWait": "1s", "groupInterval": "1s"}}
        thresholds, alerting = write_alerting(tmp_path, sink, overrides, immediate={WARNING})
        _, am = stack.alertmanager(alerting / build.ALERTMANAGER, tmp_path / "am-data")
        flags = ("--thresholds-file", str(thresholds), "--broker", redis.url)
        # A channel of the test's own: pub/sub channels are shared by every database of a Redis.
        flags += ("--broker-channel", f"wsmon-dashboards-{tmp_path.name}")
        server, port = stack.wsmon("--workers", "2", *flags)
        other, other_port = stack.wsmon("--workers", "1", *flags)
        instance, second = f"{HOST}:{port}", f"{HOST}:{other_port}"
        prom_port = free_port()
        targets = (instance, am.split("//", 1)[1], f"{HOST}:{prom_port}")
        scrape = dict(zip(JOBS, targets, strict=True))
        config = prometheus_config(tmp_path / "prometheus.yml", scrape, alerting / build.RULES, am)
        with_second_instance(config, second)
        with_probes(config, instance)
        _, prom = stack.prometheus(config, tmp_path / "tsdb", port=prom_port)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=20)) as session:
            prometheus = Prometheus(session, prom)
            window = await exercise(stack, prometheus, server.ws_url(), other.ws_url(), am)
            selections = {
                f"instance={instance}": choices(instance),
                f"instance={instance}+{ABSENT_INSTANCE}": choices(instance, ABSENT_INSTANCE),
                f"instance={instance}+{second}": choices(instance, second),
                "instance=All": choices(instance, second, all=True),
            }
            for dashboard in dashboards:
                await check_variables(prometheus, dashboard, window, instance, second)
            outcomes = await run_all(prometheus, dashboards, window, selections)
    finally:
        redis.stop()
        sink.stop()
    print(report(outcomes, dashboards))
    print(f"{HISTORICAL}: not queried live (see test_dashboards_historical)")
    require_data(outcomes, dashboards)


def with_second_instance(config: Path, target: str) -> None:
    """A second target of the wsmon job: the instances side by side, as in production."""
    document = yaml.safe_load(config.read_text())
    (job,) = [j for j in document["scrape_configs"] if j["job_name"] == "wsmon"]
    job["static_configs"][0]["targets"].append(target)
    config.write_text(yaml.safe_dump(document))


def with_probes(config: Path, target: str) -> None:
    """Add the deploy bundle's probe job, as it is, pointed at `target` (the test's wsmon)."""
    bundle = yaml.safe_load(DEPLOY_PROMETHEUS.read_text())
    (job,) = [j for j in bundle["scrape_configs"] if j.get("metrics_path") == "/probe"]
    for group in job["static_configs"]:
        group["targets"] = [target]
    job["scrape_interval"] = job["scrape_timeout"] = PROBE_INTERVAL
    # The password the job sends, beside the config as in the bundle (the test's server asks
    # for none).
    (config.parent / job["basic_auth"]["password_file"]).write_text("unused\n")
    document = yaml.safe_load(config.read_text())
    document["scrape_configs"].append(job)
    config.write_text(yaml.safe_dump(document))


def choices(*instances: str, all: bool = False) -> dict[str, Choice]:
    return {"job": Choice(("wsmon",)), "instance": Choice(instances, all=all)}


async def at_least(prometheus: Prometheus, expr: str, minimum: float, what: str) -> None:
    """Until `expr` (one series, or none yet) reads `minimum` or more."""
    await eventually(
        lambda: scalar(prometheus, expr),
        lambda value: value is not None and value >= minimum,
        within=STEADY_TIMEOUT,
        what=what,
    )


async def exercise(
    stack: Stack, prometheus: Prometheus, ws_url: str, other_url: str, am: str
) -> Window:
    """Load, bad input, the warning fired and acknowledged, deliveries across the broker both
    ways; the window since scraping began."""
    targets = len(JOBS) + 1 + len(PROBE_MODULES)  # two wsmon instances
    await at_least(prometheus, "count(up == 1)", targets, f"Prometheus scrapes {JOBS} and /probe")
    start = time.time()
    loadtest = stack.start("loadtest", [str(WSMON), "loadtest", "custom", *LOAD, "--url", ws_url])
    async with bad_input(ws_url, ws_url, *[other_url] * OTHER_BAD_CLIENTS):
        connections = 'sum(wsmon_connections_active{job="wsmon"})'
        await at_least(prometheus, connections, CONNECTIONS, "the load generator connected")
        full = time.time()
        # The raw clients' traffic arrived as what it is: broadcasts, and refused binary frames.
        for sent in (
            'wsmon_messages_received_total{type="broadcast"}',
            'wsmon_client_errors_total{reason="binary_frame"}',
        ):
            await at_least(prometheus, f"sum({sent})", 1, f"{sent} counted")
        # Across the broker: each instance received the other's deliveries and timed its own.
        for series in ("wsmon_broker_received_total", "wsmon_broker_delay_seconds_count"):
            counted = f'count({series}{{job="wsmon"}} > 0)'
            await at_least(prometheus, counted, 2, f"{series} on both instances")
        firing = f'count(ALERTS{{alertname="{WARNING}", alertstate="firing"}})'
        await at_least(prometheus, firing, 1, f"{WARNING} fires from the bad input")
        await wsmon_alerts(
            "ack", WARNING, "--duration", "1h", "--comment", "dashboards test", "--alertmanager", am
        )
        # What the Alerts dashboard's acknowledged-alert and silence panels count.
        for acknowledged in (
            'alertmanager_alerts{state="suppressed"}',
            'alertmanager_silences{state="active"}',
        ):
            await at_least(prometheus, f"sum({acknowledged})", 1, f"{acknowledged} scraped")
    # Every recording rule has been evaluated twice with the pool at full strength (the worker
    # imbalance, for one, is only recorded from 10 connections per worker).
    evaluated = "min(prometheus_rule_group_last_evaluation_timestamp_seconds)"
    await at_least(prometheus, evaluated, full + 2, "two rule evaluations under full load")
    assert loadtest.alive(), f"the load generator stopped early:\n{loadtest.log}"
    # Last, so the window ends on them: the Testing dashboard's bar gauges show the last run's
    # figures (an instant query at the window's end), and a probe leaves them only when it
    # passed (echo round trips; the pool's spread, with every worker reached).
    for series, count in (
        ("wsmon_probe_echo_round_trip_seconds", 5),
        ("wsmon_probe_pool_connections", 2),  # one per worker of `--workers 2`
        ("wsmon_probe_pool_spread_ratio", 1),
    ):
        await at_least(prometheus, f'count({series}{{job="wsmon"}})', count, f"{series} scraped")
    return Window(start, time.time(), scrape_interval=parse_duration(SCRAPE_INTERVAL))


async def check_variables(
    prometheus: Prometheus, dashboard: Dashboard, window: Window, *instances: str
) -> None:
    """The drop-downs Grafana would fill offer what the queries are run with."""
    jobs = await options(prometheus, dashboard, "job", choices(*instances), window)
    assert "wsmon" in jobs, f"{dashboard.title}: $job offers {jobs}"
    offered = await options(prometheus, dashboard, "instance", choices(*instances), window)
    assert offered == sorted(instances), f"{dashboard.title}: $instance offers {offered}"
