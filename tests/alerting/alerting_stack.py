"""Real processes for the alerting tests: prometheus, alertmanager, `wsmon serve`, an SMTP sink.

Everything listens on 127.0.0.1 with ports picked at run time. The processes are
support.processes services: stopped by their own pid (SIGTERM, then SIGKILL); their output is read
by a thread so a full pipe never blocks them, and kept so a failing test can show it.
"""

from __future__ import annotations

import contextlib
import email
import email.policy
import functools
import shutil
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session
from support import polling
from support.processes import HOST, Service, Wsmon, free_port

START_TIMEOUT = 20.0
REPO = Path(__file__).resolve().parents[2]
# A check may query Prometheus or run `wsmon alerts`: poll every 0.2 s, not every 0.05 s.
eventually = functools.partial(polling.eventually, interval=0.2)


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

    def _start(self, name: str, argv: list[str]) -> Service:
        service = Service(name, argv)
        self.services.append(service)
        return service

    def alertmanager(self, config: Path, storage: Path) -> tuple[Service, str]:
        port = free_port()
        service = self._start(
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

    def prometheus(self, config: Path, storage: Path) -> tuple[Service, str]:
        port = free_port()
        service = self._start(
            "prometheus",
            [
                tool("prometheus"),
                f"--config.file={config}",
                f"--storage.tsdb.path={storage}",
                f"--web.listen-address={HOST}:{port}",
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
