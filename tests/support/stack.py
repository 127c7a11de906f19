"""Real monitoring processes for tests: prometheus, alertmanager, `wsmon serve`, an SMTP sink.

Shared by tests/alerting (rules, Alertmanager, emails) and tests/dashboards (every panel's query
against a live or backfilled Prometheus). Everything listens on 127.0.0.1 with ports picked at run
time. The processes are support.processes services: stopped by their own pid (SIGTERM, then
SIGKILL); their output is read by a thread so a full pipe never blocks them, and kept so a failing
test can show it. A conftest takes the `stack` fixture and the log-attaching report hook with
`from support.stack import pytest_runtest_makereport, stack`.
"""

from __future__ import annotations

import asyncio
import contextlib
import email
import email.policy
import functools
import shutil
import time
import urllib.request
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from support import polling
from support.processes import HOST, WSMON, Service, Wsmon, free_port
from wsmon.alerting import build, smtp
from wsmon.thresholds import DEFAULT_THRESHOLDS, load

START_TIMEOUT = 20.0
REPO = Path(__file__).resolve().parents[2]
# A check may query Prometheus or run `wsmon alerts`: poll every 0.2 s, not every 0.05 s.
eventually = functools.partial(polling.eventually, interval=0.2)
# Scrapes and rule evaluations every second, so a test waits seconds, not minutes, for a figure.
SCRAPE_INTERVAL = "1s"


# -- an SMTP sink ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mail:
    subject: str
    to: str
    text: str
    html: str

    @classmethod
    def parse(cls, raw: bytes) -> Mail:
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        parts = {}
        for kind in ("plain", "html"):
            part = message.get_body(preferencelist=(kind,))
            content = part.get_content() if isinstance(part, EmailMessage) else ""
            parts[kind] = content.replace("\r\n", "\n")  # SMTP lines end in CRLF
        return cls(str(message["Subject"]), str(message["To"]), parts["plain"], parts["html"])


class _Collect:
    def __init__(self, inbox: list[Mail]) -> None:
        self._inbox = inbox

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content
        assert isinstance(content, bytes)
        self._inbox.append(Mail.parse(content))
        return "250 OK"


class SmtpSink:
    """An SMTP server that keeps every message; stop() and start() again on the same port."""

    def __init__(self) -> None:
        self.port = free_port()
        self.inbox: list[Mail] = []
        self._controller: Controller | None = None

    def start(self) -> None:
        self._controller = Controller(_Collect(self.inbox), hostname=HOST, port=self.port)
        self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    def matching(self, *parts: str) -> list[Mail]:
        """Messages whose subject contains every one of `parts` (alert name, FIRING...)."""
        return [m for m in self.inbox if all(part in m.subject for part in parts)]


# -- processes ---------------------------------------------------------------------------------


def wait_ready(service: Service, ready: Callable[[], bool], timeout: float, what: str) -> None:
    """Until `ready()`; fail with the service's log if it exits first or the time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not service.alive():
            pytest.fail(f"{service.name} exited ({service.process.returncode}):\n{service.log}")
        if ready():
            return
        time.sleep(0.1)
    pytest.fail(f"{service.name}: not {what} within {timeout:.0f}s:\n{service.log}")


def answers(url: str) -> bool:
    """True when GET `url` returns 200."""
    with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=1) as response:
        return bool(response.status == 200)
    return False


def tool(*names: str) -> str:
    """The first of `names` on PATH; the suite fails (not skips) without it: `make tools`."""
    for name in names:
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(f"none of {', '.join(names)} is installed; run `make tools`")


@dataclass
class Stack:
    """Processes started for one test, stopped (by pid) in reverse order at its end."""

    services: list[Service] = field(default_factory=list)

    def start(self, name: str, argv: list[str]) -> Service:
        """Any other child (a load generator, a tool): stopped with the rest."""
        service = Service(name, argv)
        self.services.append(service)
        return service

    def alertmanager(self, config: Path, storage: Path) -> tuple[Service, str]:
        port = free_port()
        service = self.start(
            "alertmanager",
            [
                tool("prometheus-alertmanager", "alertmanager"),
                f"--config.file={config}",
                f"--storage.path={storage}",
                f"--web.listen-address={HOST}:{port}",
                "--cluster.listen-address=",  # no gossip: a single, isolated instance
                "--log.level=debug",
            ],
        )
        url = f"http://{HOST}:{port}"
        wait_ready(service, lambda: answers(f"{url}/-/ready"), START_TIMEOUT, "ready")
        return service, url

    def prometheus(
        self, config: Path, storage: Path, *flags: str, port: int | None = None
    ) -> tuple[Service, str]:
        """Prometheus on `storage` (empty, or blocks made by promtool), with `flags` added; on
        `port` when its config must name it (to scrape itself), else on a free one."""
        port = port or free_port()
        service = self.start(
            "prometheus",
            [
                tool("prometheus"),
                f"--config.file={config}",
                f"--storage.tsdb.path={storage}",
                f"--web.listen-address={HOST}:{port}",
                *flags,
            ],
        )
        url = f"http://{HOST}:{port}"
        wait_ready(service, lambda: answers(f"{url}/-/ready"), START_TIMEOUT, "ready")
        return service, url

    def wsmon(self, *flags: str) -> tuple[Wsmon, int]:
        service = Wsmon(*flags, start_timeout=START_TIMEOUT)
        self.services.append(service)
        return service, service.port

    def stop_all(self) -> None:
        for service in reversed(self.services):
            service.stop()


async def wsmon_alerts(*argv: str) -> str:
    """`wsmon alerts ARGV...` as an operator runs it (a process, so it is the installed CLI and
    the test's event loop keeps serving); its stdout, after asserting it succeeded."""
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


# -- configuration -----------------------------------------------------------------------------


def write_alerting(
    directory: Path,
    sink: SmtpSink,
    overrides: Mapping[str, Any],
    immediate: Collection[str] | None = None,
) -> tuple[Path, Path]:
    """thresholds.yaml with `for: 0s`, and the rules and Alertmanager config built from it.

    `immediate` names the alerts whose `for` becomes 0s (None: all of them); `overrides` go to
    the mixin's _config, with the SMTP relay set to `sink`. Returns (thresholds file, directory
    of the generated files).
    """
    entries = yaml.safe_load(DEFAULT_THRESHOLDS.read_text())
    for entry in entries:
        if immediate is None or entry["name"] in immediate:
            entry["for"] = "0s"
    thresholds = directory / "thresholds.yaml"
    thresholds.write_text(yaml.safe_dump(entries))
    relay = smtp.from_environment(
        {
            "WSMON_SMTP_SMARTHOST": f"{HOST}:{sink.port}",
            "WSMON_SMTP_FROM": "wsmon@test.invalid",
            "WSMON_SMTP_TO": "oncall@test.invalid",
            "WSMON_SMTP_REQUIRE_TLS": "false",
        }
    )
    generated = directory / "alerting"
    build.write(build.render(load(thresholds), {**overrides, "smtp": relay}), generated)
    return thresholds, generated


def prometheus_config(
    path: Path,
    scrape: Mapping[str, str],
    rules: Path | None = None,
    alertmanager: str | None = None,
    interval: str = SCRAPE_INTERVAL,
) -> Path:
    """prometheus.yml at `path`: one job per `scrape` entry (job name -> host:port), scraped and
    evaluated every `interval` (which is also a subquery's default resolution)."""
    config: dict[str, Any] = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": [target]}]}
            for job, target in scrape.items()
        ],
    }
    if rules is not None:
        config["rule_files"] = [str(rules)]
    if alertmanager is not None:
        target = alertmanager.split("//", 1)[1]
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": [target]}]}]}
    path.write_text(yaml.safe_dump(config))
    return path


# -- pytest glue (imported by the conftests that use it) ---------------------------------------


@pytest.fixture
def stack() -> Iterator[Stack]:
    started = Stack()
    yield started
    started.stop_all()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Attach the log of every process a failed test started, so the failure explains itself."""
    report = yield
    started = getattr(item, "funcargs", {}).get("stack")
    if report.failed and isinstance(started, Stack):
        for service in started.services:
            report.sections.append((f"{service.name} log", service.log[-20000:]))
    return report
