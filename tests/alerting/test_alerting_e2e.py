"""End to end with real processes: wsmon serve -> Prometheus -> Alertmanager -> email.

`wsmon serve`, Debian's `prometheus` and `prometheus-alertmanager`, and an aiosmtpd sink, all on
127.0.0.1. The rules are the generated ones from thresholds.yaml with only what makes a test fast
changed: every `for` is 0s and the rate window 10s (scrapes and evaluations every second); the
Alertmanager config is the generated one with group_wait 1s, group_interval 1s, repeat 2s and the
sink as its smarthost. One test walks the life of an incident, each step polled with a deadline:

1. 1.5 % of messages refused: the error-rate warning fires, its email arrives (name, severity,
   value, runbook), wsmon:health:status reads 1 and /api/health "degraded";
2. every message refused: the critical fires, health reads 2 and /api/health "unhealthy";
3. the critical repeats every 2s until `wsmon alerts ack`; then it is listed as acknowledged and
   no repeat is sent;
4. traffic stops: a resolved email follows and health reads 0; `wsmon alerts unack` expires the ack;
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
from alerting_stack import Mail, SmtpSink, Stack, eventually
from support.processes import HOST, WSMON

from wsmon.alerting import build, smtp
from wsmon.thresholds import DEFAULT_THRESHOLDS, load

WARNING = "WsmonMessageErrorRateHigh"  # message_error_rate > 1 %, warning
CRITICAL = "WsmonMessageSuccessRateCritical"  # message_success_rate < 98 %, critical
RATE_WINDOW = "10s"
GROUP_WAIT, GROUP_INTERVAL, REPEAT_INTERVAL = 1, 1, 2  # seconds
# Every reply is read before the next batch, and a batch every 0.2 s stays far below the
# per-connection rate limit (1000/s), so no rate_limited error muddies the error rate.
GOOD_PER_BAD = 65  # 1 refused in 66: 1.5 %, between the 1 % warning and the 2 % critical
PAUSE = 0.2
FIRE_TIMEOUT = 30.0  # scrape + rate window + evaluation + group_wait, with room for a slow box
RESOLVE_TIMEOUT = 40.0  # the rate window must empty first
MAIL_TIMEOUT = 30.0


@dataclass
class Traffic:
    """One /ws client sending a mix of good and bad messages; `mode` changes it at any time."""

    url: str
    mode: str = "idle"  # idle | mixed (1.5 % bad) | bad (all bad)

    def batch(self) -> list[str]:
        if self.mode == "mixed":
            # The bad one last: a scrape in the middle of the very first batch must not see
            # 1 error in 1 message (100 %) and fire the critical for a moment.
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


async def wsmon_cli(*argv: str) -> str:
    process = await asyncio.create_subprocess_exec(
        str(WSMON),
        "alerts",
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 0, f"wsmon alerts {' '.join(argv)}: {err.decode()}"
    return out.decode()


def write_configs(tmp_path: Path, sink: SmtpSink) -> tuple[Path, Path]:
    """The test variant of thresholds.yaml and everything built from it."""
    entries = yaml.safe_load(DEFAULT_THRESHOLDS.read_text())
    for entry in entries:
        entry["for"] = "0s"
    thresholds = tmp_path / "thresholds.yaml"
    thresholds.write_text(yaml.safe_dump(entries))
    relay = smtp.from_environment(
        {
            "WSMON_SMTP_SMARTHOST": f"{HOST}:{sink.port}",
            "WSMON_SMTP_FROM": "wsmon@test.invalid",
            "WSMON_SMTP_TO": "oncall@test.invalid",
            "WSMON_SMTP_REQUIRE_TLS": "false",
        }
    )
    overrides = {
        "rateWindow": RATE_WINDOW,
        "alertmanager": {
            "groupWait": f"{GROUP_WAIT}s",
            "groupInterval": f"{GROUP_INTERVAL}s",
            "repeatInterval": f"{REPEAT_INTERVAL}s",
        },
        "smtp": relay,
    }
    build.write(build.render(load(thresholds), overrides), tmp_path / "alerting")
    return thresholds, tmp_path / "alerting"


def prometheus_config(tmp_path: Path, rules: Path, wsmon_port: int, alertmanager: str) -> Path:
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(rules)],
        "alerting": {
            "alertmanagers": [{"static_configs": [{"targets": [alertmanager.split("//")[1]]}]}]
        },
        "scrape_configs": [
            {"job_name": "wsmon", "static_configs": [{"targets": [f"{HOST}:{wsmon_port}"]}]}
        ],
    }
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    return path


def check_firing_mail(mail: Mail, alertname: str, severity: str) -> None:
    text = mail.text
    assert f"{alertname} is FIRING" in text, text
    assert re.search(rf"severity:\s+{severity}\n", text), text
    assert re.search(r"value:\s+\d+(\.\d+)?%\n", text), text
    assert re.search(r"threshold:\s+[<>]=? \d+%\n", text), text
    assert f"alerting/runbooks.md#{alertname.lower()}" in text, text
    assert "dashboard:  http://localhost:3000/d/wsmon-messages?" in text, text
    assert f"runbooks.md#{alertname.lower()}" in mail.html, "the HTML part links the runbook too"


@pytest.mark.timeout(180)
async def test_an_incident_from_bad_traffic_to_email_ack_and_resolution(
    stack: Stack, tmp_path: Path
) -> None:
    defaults = {t.name: t for t in load(DEFAULT_THRESHOLDS)}
    assert (defaults[WARNING].metric, defaults[WARNING].severity) == (
        "message_error_rate",
        "warning",
    )
    assert (defaults[CRITICAL].metric, defaults[CRITICAL].severity) == (
        "message_success_rate",
        "critical",
    )
    sink = SmtpSink()
    sink.start()
    try:
        thresholds, generated = write_configs(tmp_path, sink)
        _, am = stack.alertmanager(generated / build.ALERTMANAGER, tmp_path / "am-data")
        _, port = stack.wsmon("--workers", "2", "--thresholds-file", str(thresholds))
        _, prom = stack.prometheus(
            prometheus_config(tmp_path, generated / build.RULES, port, am), tmp_path / "tsdb"
        )
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            await incident(session, Prometheus(session, prom), am, port, sink)
    finally:
        sink.stop()


async def incident(
    session: aiohttp.ClientSession, prom: Prometheus, am: str, port: int, sink: SmtpSink
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

    async with running(traffic):
        # 1. 1.5 % bad: the warning alone.
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
        check_firing_mail(mail, WARNING, "warning")
        assert CRITICAL not in await prom.firing(), "1.5 % must not cross the 2 % critical"
        await eventually(prom.health, lambda h: h == 1, within=10, what="health reads degraded")
        await eventually(
            lambda: get_json(session, f"{base}/api/health"),
            lambda r: r[1]["status"] == "degraded",
            within=15,
            what="/api/health degraded",
        )

        # 2. Everything bad: the critical, which inhibits the warning's emails.
        traffic.mode = "bad"
        await eventually(
            prom.firing, lambda a: CRITICAL in a, within=FIRE_TIMEOUT, what=f"{CRITICAL} fires"
        )
        await eventually(prom.health, lambda h: h == 2, within=10, what="health reads unhealthy")
        status, document = await eventually(
            lambda: get_json(session, f"{base}/api/health"),
            lambda r: r[1]["status"] == "unhealthy",
            within=15,
            what="/api/health unhealthy",
        )
        assert status == 503, document
        criticals = await eventually(
            lambda: inbox(sink, CRITICAL, "FIRING"),
            lambda found: len(found) >= 2,
            within=MAIL_TIMEOUT,
            what=f"a FIRING email for {CRITICAL} and a repeat {REPEAT_INTERVAL}s later",
        )
        check_firing_mail(criticals[0], CRITICAL, "critical")

        # 3. Acknowledge: listed as acknowledged, and the repeats stop.
        acked = await wsmon_cli(
            "ack",
            CRITICAL,
            "--duration",
            "2h",
            "--comment",
            "e2e: rolling back",
            "--author",
            "e2e",
            "--alertmanager",
            am,
        )
        silence = acked.strip().rsplit(" ", 1)[1]

        async def listing() -> dict[str, dict[str, Any]]:
            rows = json.loads(await wsmon_cli("list", "--json", "--alertmanager", am))
            return {row["alertname"]: row for row in rows}

        rows = await eventually(
            listing,
            lambda rows: rows.get(CRITICAL, {}).get("state") == "acknowledged",
            within=10,
            what=f"{CRITICAL} listed as acknowledged",
        )
        (ack,) = rows[CRITICAL]["acknowledgements"]
        assert (ack["id"], ack["created_by"], ack["comment"]) == (
            silence,
            "e2e",
            "e2e: rolling back",
        )
        assert rows[WARNING]["state"] == "inhibited", "the critical silences its warning twin"
        # A flush that began before the silence may still deliver; after that, nothing.
        await asyncio.sleep(GROUP_INTERVAL + 1)
        before = len(sink.matching(CRITICAL))
        quiet = 3 * (REPEAT_INTERVAL + GROUP_INTERVAL)
        await asyncio.sleep(quiet)
        assert len(sink.matching(CRITICAL)) == before, f"a repeat within {quiet}s of the ack"
        assert CRITICAL in await prom.firing(), "still firing: the silence, not a fix, kept quiet"

        # 4. Traffic stops: resolved.
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
        assert await wsmon_cli("unack", silence, "--alertmanager", am) == (
            f"expired silence {silence}\n"
        )

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
