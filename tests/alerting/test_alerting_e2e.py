"""End to end with real processes: wsmon serve -> Prometheus -> Alertmanager -> email.

`wsmon serve`, Debian's `prometheus` and `prometheus-alertmanager`, and an aiosmtpd sink, all on
127.0.0.1. The rules are the generated ones from thresholds.yaml with only what makes a test fast
changed: every `for` is 0s and the rate window 10s (scrapes and evaluations every second); the
Alertmanager config is the generated one with group_wait 1s, group_interval 1s, repeat 2s and the
sink as its smarthost. One test walks the life of an incident caused by a bad client, each step
waiting on the event itself (an alert, an email, an Alertmanager flush), never a fixed sleep:

1. 10 % of messages refused: the client-error warning fires, its email arrives (name, severity,
   value, runbook, dashboard), wsmon:health:status reads 1 and /api/health "degraded";
2. every message refused: still that warning alone, no critical, health 1 and /api/health
   "degraded" with HTTP 200 (issue 8: one client must not page or fail the load balancer);
3. the warning repeats every 2s until `wsmon alerts ack`; then it is listed as acknowledged and
   Alertmanager's next flushes send nothing;
4. `wsmon alerts unack` expires the ack; traffic stops: a resolved email follows, health reads 0;
5. the SMTP sink is down when the warning fires again: Alertmanager's attempt fails, and the email
   arrives once the sink is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from support.processes import HOST, Service
from support.stack import (
    Mail,
    SmtpSink,
    Stack,
    eventually,
    prometheus_config,
    write_alerting,
    wsmon_alerts,
)

from wsmon.alerting import build, gotemplate
from wsmon.thresholds import DEFAULT_THRESHOLDS, load

pytestmark = pytest.mark.integration

WARNING = "WsmonClientErrorRatioHigh"  # client_error_ratio > 5 %, warning (never critical)
RATE_WINDOW = "10s"
GROUP_WAIT, GROUP_INTERVAL, REPEAT_INTERVAL = 1, 1, 2  # seconds
# Every reply is read before the next batch, and a batch every 0.2 s stays far below the
# per-connection rate limit (1000/s), so no rate_limited error joins the invalid JSON.
GOOD_PER_BAD = 9  # 1 refused in 10: twice the 5 % warning
PAUSE = 0.2
# Flushes of the acknowledged group that must pass without an email: together they span more
# than a repeat interval, so an unacknowledged alert would have been repeated within them.
QUIET_FLUSHES = REPEAT_INTERVAL // GROUP_INTERVAL + 2
FIRE_TIMEOUT = 30.0  # scrape + rate window + evaluation + group_wait, with room for a slow box
RESOLVE_TIMEOUT = 40.0  # the rate window must empty first
MAIL_TIMEOUT = 30.0


@dataclass
class Traffic:
    """One /ws client sending a mix of good and bad messages; `mode` changes it at any time."""

    url: str
    mode: str = "idle"  # idle | mixed (10 % bad) | bad (all bad)

    def batch(self) -> list[str]:
        if self.mode == "mixed":
            return ['{"type":"echo"}'] * GOOD_PER_BAD + ["not json"]
        if self.mode == "bad":
            return ["not json"] * 20
        return []

    async def run(self) -> None:
        async with aiohttp.ClientSession() as session, session.ws_connect(self.url) as ws:
            welcome = await ws.receive_json(timeout=10)
            assert welcome["type"] == "welcome", welcome
            while True:
                batch = self.batch()
                for frame in batch:
                    await ws.send_str(frame)
                for _ in batch:
                    await ws.receive(timeout=10)
                await asyncio.sleep(PAUSE)


@contextlib.asynccontextmanager
async def running(traffic: Traffic) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(traffic.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


class Prometheus:
    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session, self.url = session, url

    async def query(self, expr: str) -> list[dict[str, Any]]:
        async with self.session.get(f"{self.url}/api/v1/query", params={"query": expr}) as r:
            body = await r.json()
        assert body["status"] == "success", body
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    async def health(self) -> float | None:
        result = await self.query("wsmon:health:status")
        return float(result[0]["value"][1]) if result else None

    async def firing(self) -> set[str]:
        result = await self.query('ALERTS{alertstate="firing"}')
        return {series["metric"]["alertname"] for series in result}

    async def critical(self) -> set[str]:
        """Critical alerts firing or pending: one pending is already one too many here."""
        result = await self.query('ALERTS{severity="critical"}')
        return {series["metric"]["alertname"] for series in result}


class Flushes:
    """Alertmanager's flushes of one alert group, read from its debug log (`msg=flushing`).

    A group's flushes run one after the other, each sending its notifications before the next
    starts: a flush logged after some moment proves every earlier one has finished sending.
    """

    def __init__(self, alertmanager: Service, alertname: str) -> None:
        self.service, self.alertname = alertmanager, alertname

    async def count(self) -> int:
        group = f'alertname=\\"{self.alertname}\\"'
        return sum(1 for line in self.service.lines if "msg=flushing" in line and group in line)


async def inbox(sink: SmtpSink, *subject: str) -> list[Mail]:
    """The sink's messages whose subject has every part (awaitable, for `eventually`)."""
    return sink.matching(*subject)


async def get_json(session: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with session.get(url) as response:
        return response.status, await response.json()


async def failed_email_requests(session: aiohttp.ClientSession, alertmanager: str) -> float:
    async with session.get(f"{alertmanager}/metrics") as response:
        text = await response.text()
    found = re.search(
        r'^alertmanager_notification_requests_failed_total\{integration="email"\} (\S+)$',
        text,
        re.MULTILINE,
    )
    assert found, "Alertmanager no longer exports its failed notification counter"
    return float(found.group(1))


def write_configs(tmp_path: Path, sink: SmtpSink) -> tuple[Path, Path]:
    """The test variant of thresholds.yaml (every `for` 0s) and everything built from it."""
    overrides = {
        "rateWindow": RATE_WINDOW,
        "alertmanager": {
            "groupWait": f"{GROUP_WAIT}s",
            "groupInterval": f"{GROUP_INTERVAL}s",
            "repeatInterval": f"{REPEAT_INTERVAL}s",
        },
    }
    return write_alerting(tmp_path, sink, overrides)


def check_firing_mail(mail: Mail, alertname: str, severity: str, rules: Path, port: int) -> None:
    text = mail.text
    assert f"{alertname} is FIRING" in text, text
    assert re.search(rf"severity:\s+{severity}\n", text), text
    assert re.search(r"value:\s+\d+(\.\d+)?%\n", text), text
    assert re.search(r"threshold:\s+[<>]=? \d+%\n", text), text
    (annotations,) = [
        rule["annotations"]
        for group in yaml.safe_load(rules.read_text())["groups"]
        for rule in group["rules"]
        if rule.get("alert") == alertname
    ]
    runbook = gotemplate.render(annotations["runbook_url"], {"instance": f"{HOST}:{port}"}, 0)
    assert runbook.endswith(f"#{alertname.lower()}"), runbook
    assert runbook in text, text
    assert runbook in mail.html, "the HTML part links the runbook too"
    assert "dashboard:  http://localhost:3000/d/wsmon-messages?" in text, text


@pytest.mark.timeout(180)
async def test_an_incident_from_bad_traffic_to_email_ack_and_resolution(
    stack: Stack, tmp_path: Path
) -> None:
    defaults = {t.name: t for t in load(DEFAULT_THRESHOLDS)}
    assert (defaults[WARNING].metric, defaults[WARNING].severity) == (
        "client_error_ratio",
        "warning",
    )
    assert defaults[WARNING].value < 1 / (GOOD_PER_BAD + 1), "mixed traffic must cross it"
    sink = SmtpSink()
    sink.start()
    try:
        thresholds, generated = write_configs(tmp_path, sink)
        am_service, am = stack.alertmanager(generated / build.ALERTMANAGER, tmp_path / "am-data")
        _, port = stack.wsmon("--workers", "2", "--thresholds-file", str(thresholds))
        config = prometheus_config(
            tmp_path / "prometheus.yml", {"wsmon": f"{HOST}:{port}"}, generated / build.RULES, am
        )
        _, prom = stack.prometheus(config, tmp_path / "tsdb")
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            await incident(
                session,
                Prometheus(session, prom),
                am,
                Flushes(am_service, WARNING),
                generated / build.RULES,
                port,
                sink,
            )
    finally:
        sink.stop()


async def incident(
    session: aiohttp.ClientSession,
    prom: Prometheus,
    am: str,
    flushes: Flushes,
    rules: Path,
    port: int,
    sink: SmtpSink,
) -> None:
    base = f"http://{HOST}:{port}"
    traffic = Traffic(f"ws://{HOST}:{port}/ws")
    await eventually(
        lambda: prom.query('up{job="wsmon"}'),
        lambda r: bool(r) and r[0]["value"][1] == "1",
        within=FIRE_TIMEOUT,
        what="Prometheus scrapes wsmon",
    )
    await eventually(prom.health, lambda h: h == 0, within=10, what="healthy at rest")

    async def degraded_not_failed() -> None:
        """Health 1, never 2; /api/health degraded with 200: only the client figure crossed."""
        await eventually(prom.health, lambda h: h == 1, within=10, what="health reads degraded")
        status, document = await eventually(
            lambda: get_json(session, f"{base}/api/health"),
            lambda r: r[1]["status"] == "degraded",
            within=15,
            what="/api/health degraded",
        )
        assert status == 200, document
        crossed = {c["name"] for c in document["checks"] if c["status"] != "healthy"}
        assert crossed == {"client_error_ratio"}, document
        assert await prom.critical() == set(), "a client's bad input must never page"

    async with running(traffic):
        # 1. 10 % bad: the client-error warning.
        traffic.mode = "mixed"
        await eventually(
            prom.firing, lambda a: WARNING in a, within=FIRE_TIMEOUT, what=f"{WARNING} fires"
        )
        (mail, *_) = await eventually(
            lambda: inbox(sink, WARNING, "FIRING"),
            bool,
            within=MAIL_TIMEOUT,
            what=f"a FIRING email for {WARNING}",
        )
        assert mail.subject.startswith(f"[FIRING:1] {WARNING} (warning) on {HOST}:{port}")
        assert mail.to == "oncall@test.invalid"
        check_firing_mail(mail, WARNING, "warning", rules, port)
        await degraded_not_failed()

        # 2. Everything bad: the success rate stays 100 %, so still nothing pages.
        traffic.mode = "bad"
        await eventually(
            lambda: prom.query("wsmon:client_error_ratio:ratio_rate10s"),
            lambda r: bool(r) and float(r[0]["value"][1]) > 0.9,
            within=FIRE_TIMEOUT,
            what="client errors above 90 %",
        )
        (success,) = await prom.query("wsmon:message_success_rate:ratio_rate10s")
        assert float(success["value"][1]) == 1.0, success
        assert await prom.firing() == {WARNING}
        await degraded_not_failed()
        await eventually(
            lambda: inbox(sink, WARNING, "FIRING"),
            lambda found: len(found) >= 2,
            within=MAIL_TIMEOUT,
            what=f"a repeat of the {WARNING} email {REPEAT_INTERVAL}s later",
        )

        # 3. Acknowledge: listed as acknowledged, and the repeats stop.
        acked = await wsmon_alerts(
            "ack",
            WARNING,
            "--duration",
            "2h",
            "--comment",
            "e2e: blocking the client",
            "--author",
            "e2e",
            "--alertmanager",
            am,
        )
        silence = acked.strip().rsplit(" ", 1)[1]

        async def listing() -> dict[str, dict[str, Any]]:
            rows = json.loads(await wsmon_alerts("list", "--json", "--alertmanager", am))
            return {row["alertname"]: row for row in rows}

        rows = await eventually(
            listing,
            lambda rows: rows.get(WARNING, {}).get("state") == "acknowledged",
            within=10,
            what=f"{WARNING} listed as acknowledged",
        )
        (ack,) = rows[WARNING]["acknowledgements"]
        assert (ack["id"], ack["created_by"], ack["comment"]) == (
            silence,
            "e2e",
            "e2e: blocking the client",
        )
        # A flush that began before the silence may still deliver; one that starts after the
        # silence is known has seen it, and every flush before it has finished sending.
        seen = await flushes.count()
        await eventually(
            flushes.count, lambda n: n > seen, within=10, what="a flush after the silence"
        )
        before = len(sink.matching(WARNING))
        seen = await flushes.count()
        await eventually(
            flushes.count,
            lambda n: n >= seen + QUIET_FLUSHES,
            within=10 * QUIET_FLUSHES * GROUP_INTERVAL,
            what=f"{QUIET_FLUSHES} flushes of the acknowledged group",
        )
        assert len(sink.matching(WARNING)) == before, "an email after the acknowledgement"
        assert WARNING in await prom.firing(), "still firing: the silence, not a fix, kept quiet"

        # 4. Unacknowledged, then traffic stops: resolved.
        assert await wsmon_alerts("unack", silence, "--alertmanager", am) == (
            f"expired silence {silence}\n"
        )
        traffic.mode = "idle"
        (resolved, *_) = await eventually(
            lambda: inbox(sink, WARNING, "RESOLVED"),
            bool,
            within=RESOLVE_TIMEOUT,
            what=f"a RESOLVED email for {WARNING}",
        )
        assert f"{WARNING} is RESOLVED" in resolved.text
        assert "resolved:" in resolved.text
        await eventually(prom.health, lambda h: h == 0, within=10, what="healthy again")

        # 5. The sink is down when the warning fires again; the email arrives once it is back.
        sink.stop()
        firing_before = len(sink.matching(WARNING, "FIRING"))
        failed_before = await failed_email_requests(session, am)
        traffic.mode = "mixed"
        await eventually(
            lambda: failed_email_requests(session, am),
            lambda failed: failed > failed_before,
            within=FIRE_TIMEOUT,
            what="Alertmanager tries the SMTP sink while it is down",
        )
        sink.start()
        await eventually(
            lambda: inbox(sink, WARNING, "FIRING"),
            lambda found: len(found) > firing_before,
            within=MAIL_TIMEOUT,
            what=f"the {WARNING} email after the sink came back",
        )
