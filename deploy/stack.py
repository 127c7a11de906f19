"""`make stack`: the deploy bundle's parts running on this machine, on loopback, without Docker.

The stack is the bundle itself, rendered for 127.0.0.1 and the chosen ports into the state
directory: Prometheus and Alertmanager start with the argv of the bundle's systemd units (so the
30-day retention is the very flag the units pass), wsmon with the bundle's wsmon.yaml (held to
loopback by a flag), Alertmanager mails an SMTP sink (aiosmtpd's Maildir handler, so every mail
is kept as a file), and Grafana with the bundle's provisioning when a `grafana-server` is on the
PATH. The state directory keeps Prometheus' data between runs: the history grows to 30 days.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from wsmon import stackrecord
from wsmon.alerting import build as alerting
from wsmon.alerting import smtp
from wsmon.stackrecord import Record
from wsmon.thresholds import Threshold

from . import build, supervise

HOST: Final = "127.0.0.1"
DEFAULT_STATE: Final = Path(".stack")
START_TIMEOUT: Final = 30.0
# Which ports of the bundle's `deploy.ports` each part listens on, in the order they start: the
# mail sink before Alertmanager mails it, Alertmanager before Prometheus sends to it.
PORT_KEYS: Final = {
    "smtp": "smtpSink",
    "wsmon": "wsmon",
    "alertmanager": "alertmanager",
    "prometheus": "prometheus",
    "grafana": "grafana",
}
TITLES: Final = {
    "smtp": "SMTP sink",
    "wsmon": "wsmon",
    "alertmanager": "Alertmanager",
    "prometheus": "Prometheus",
    "grafana": "Grafana",
}
# The Debian packages' names first (prometheus-alertmanager), then upstream's.
BINARIES: Final = {
    "prometheus": ("prometheus",),
    "alertmanager": ("prometheus-alertmanager", "alertmanager"),
}


class StackError(RuntimeError):
    """Why the stack cannot start or stop; one message for the user."""


@dataclass(frozen=True)
class State:
    """Where a stack keeps its files: rendered configs, data, logs, mails and the process record."""

    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def mail(self) -> Path:
        return self.root / "mail"

    @property
    def record(self) -> Path:
        return self.root / stackrecord.RECORD

    def log(self, name: str) -> Path:
        return self.logs / f"{name}.log"

    def read(self) -> list[Record]:
        try:
            return stackrecord.read(self.root)
        except stackrecord.RecordError as exc:
            raise StackError(str(exc)) from None

    def write(self, records: list[Record]) -> None:
        stackrecord.write(self.root, records)


@dataclass(frozen=True)
class Part:
    """One process of the stack and how to tell it is ready."""

    name: str
    argv: tuple[str, ...]
    port: int
    # The HTTP path that answers 200 once the part serves; None: an SMTP server's 220 greeting.
    ready_path: str | None
    env: Mapping[str, str] = field(default_factory=dict)

    @property
    def title(self) -> str:
        return TITLES[self.name]

    @property
    def url(self) -> str:
        scheme = "smtp" if self.ready_path is None else "http"
        return f"{scheme}://{HOST}:{self.port}"

    def ready(self) -> bool:
        if self.ready_path is None:
            return _smtp_greets(self.port)
        try:
            with urllib.request.urlopen(self.url + self.ready_path, timeout=2) as response:
                return bool(response.status == 200)
        except (OSError, urllib.error.URLError):
            return False


def _smtp_greets(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=2) as connection:
            return connection.recv(3) == b"220"
    except OSError:
        return False


def port_in_use(port: int) -> bool:
    """True when something listens on HOST:port (SO_REUSEADDR, as the servers bind: a closed
    connection's TIME_WAIT is not a listener)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError:
            return True
    return False


def configured_ports(
    thresholds: tuple[Threshold, ...], chosen: Mapping[str, int | None]
) -> dict[str, int]:
    """Each part's port: the one chosen, else the bundle's (alerting/config.libsonnet)."""
    config = alerting.config(thresholds)
    bundle: Mapping[str, int] = config["deploy"]["ports"]
    ports = {part: chosen.get(part) or bundle[key] for part, key in PORT_KEYS.items()}
    taken: dict[int, str] = {}
    for part, port in ports.items():
        if port in taken:
            raise StackError(f"{TITLES[taken[port]]} and {TITLES[part]} are both given port {port}")
        taken[port] = part
    return ports


def find_binary(part: str) -> str:
    for name in BINARIES[part]:
        found = shutil.which(name)
        if found:
            return found
    raise StackError(
        f"{BINARIES[part][0]} is not installed: `make tools` installs Debian's"
        f" {BINARIES[part][0]} package"
    )


def exec_start(unit: str) -> list[str]:
    """A systemd unit's ExecStart as argv (its lines joined where they end in a backslash)."""
    for line in unit.replace("\\\n", " ").splitlines():
        if line.startswith("ExecStart="):
            return shlex.split(line.removeprefix("ExecStart="))
    raise StackError("the bundle's unit has no ExecStart")  # the bundle's tests prevent it


def _grafana(state: State, port: int) -> Part | None:
    binary = shutil.which("grafana-server")
    if binary is None:
        return None
    # Packages install Grafana's defaults (conf/defaults.ini, public/) under /usr/share/grafana;
    # GRAFANA_HOME names another install.
    home = os.environ.get("GRAFANA_HOME", "/usr/share/grafana")
    env = {
        "GF_PATHS_PROVISIONING": str(state.config / "grafana" / "provisioning"),
        "GF_PATHS_DATA": str(state.data / "grafana"),
        "GF_PATHS_LOGS": str(state.logs / "grafana"),
        "GF_PATHS_PLUGINS": str(state.data / "grafana" / "plugins"),
        "GF_SERVER_HTTP_ADDR": HOST,
        "GF_SERVER_HTTP_PORT": str(port),
    }
    return Part("grafana", (binary, "--homepath", home), port, "/api/health", env)


def plan(
    state: State, ports: Mapping[str, int], thresholds: tuple[Threshold, ...], thresholds_text: str
) -> list[Part]:
    """Render the bundle for this machine into the state directory; the parts, in start order.

    wsmon judges /api/health by the bundle's copy of the thresholds file (`thresholds_text`),
    which is the one to edit with `wsmon thresholds --file` (and `--stack-dir` to apply it)."""
    binaries = {part: find_binary(part) for part in BINARIES}
    root = state.root.resolve()
    config, data = root / "config", root / "data"
    relay = smtp.from_environment(
        {
            "WSMON_SMTP_SMARTHOST": f"{HOST}:{ports['smtp']}",
            "WSMON_SMTP_FROM": "wsmon-stack@localhost",
            "WSMON_SMTP_TO": "oncall@localhost",
            "WSMON_SMTP_REQUIRE_TLS": "false",
        }
    )
    overrides = {
        "smtp": relay,
        "alertmanagerUrl": f"http://{HOST}:{ports['alertmanager']}",
        "deploy": {
            "host": HOST,
            "ports": {key: ports[part] for part, key in PORT_KEYS.items()},
            "paths": {
                "prometheus": binaries["prometheus"],
                "prometheusConfig": str(root / stackrecord.PROMETHEUS_CONFIG),
                "prometheusData": str(data / "prometheus"),
                "alertmanager": binaries["alertmanager"],
                "alertmanagerConfig": str(config / "alertmanager"),
                "alertmanagerData": str(data / "alertmanager"),
                "grafanaDashboards": str(config / "grafana" / "dashboards"),
                "wsmonConfig": str(config / "wsmon" / "wsmon.yaml"),
                "wsmonThresholds": str(config / "wsmon" / "thresholds.yaml"),
                # A development stack on loopback: no tokens (wsmon is started with --no-auth).
                "wsmonJwtSecret": "",
            },
        },
    }
    files = build.render(thresholds, overrides, thresholds_text)
    wanted = ("prometheus/", "alertmanager/", "grafana/", "wsmon/")
    build.write({p: text for p, text in files.items() if p.startswith(wanted)}, config)
    wsmon = [sys.executable, "-m", "wsmon", *exec_start(files["systemd/wsmon.service"])[1:]]
    parts = [
        Part(
            "smtp",
            (
                *(sys.executable, "-m", "aiosmtpd", "--nosetuid"),
                *("--listen", f"{HOST}:{ports['smtp']}"),
                *("--class", "aiosmtpd.handlers.Mailbox", str(root / "mail")),
            ),
            ports["smtp"],
            None,
        ),
        # The bundle's wsmon.yaml listens on every address, as an installed server does; the
        # stack stays on loopback (a flag outranks the file), and checks no tokens: its log
        # says so every minute.
        Part("wsmon", (*wsmon, "--host", HOST, "--no-auth"), ports["wsmon"], "/readyz"),
        Part(
            "alertmanager",
            tuple(exec_start(files["systemd/wsmon-alertmanager.service"])),
            ports["alertmanager"],
            "/-/ready",
        ),
        Part(
            "prometheus",
            tuple(exec_start(files["systemd/wsmon-prometheus.service"])),
            ports["prometheus"],
            "/-/ready",
        ),
    ]
    grafana = _grafana(state, ports["grafana"])
    return parts if grafana is None else [*parts, grafana]


def running(state: State) -> list[Record]:
    """The recorded processes that are still the ones the stack started."""
    return [record for record in state.read() if record.alive()]


def start(
    state: State,
    ports: Mapping[str, int],
    thresholds: tuple[Threshold, ...],
    thresholds_text: str,
    progress: Callable[[str], None],
) -> list[Part]:
    """Start every part and wait until each serves; on a failure stop what was started."""
    alive = running(state)
    if alive:
        pids = ", ".join(f"{r.name} {r.pid}" for r in alive)
        raise StackError(
            f"a stack is already running from {state.root} ({pids}): use it, or stop it"
            " first with `make stack-stop`"
        )
    for name, port in ports.items():
        if name == "grafana" and shutil.which("grafana-server") is None:
            continue
        if port_in_use(port):
            raise StackError(
                f"port {port} ({TITLES[name]}) is in use on {HOST}: stop what listens there,"
                f" or pick another with --{name}-port"
            )
    progress(f"rendering the bundle for {HOST} into {state.config}")
    parts = plan(state, ports, thresholds, thresholds_text)
    records: list[Record] = []
    for part in parts:
        progress(f"starting {part.title} on {part.url}")
        record, process = supervise.spawn(part.name, part.argv, state.log(part.name), part.env)
        records.append(record)
        state.write(records)
        if not _wait_ready(part, process.poll):
            stop(state, lambda _line: None)
            log = state.log(part.name)
            raise StackError(
                f"{part.title} did not become ready within {START_TIMEOUT:.0f} s; everything"
                f" started was stopped. The end of {log}:\n{supervise.tail(log)}"
            )
    return parts


def _wait_ready(part: Part, exited: Callable[[], int | None]) -> bool:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if exited() is not None:
            return False
        if part.ready():
            return True
        time.sleep(0.2)
    return False


def stop(state: State, progress: Callable[[str], None]) -> list[str]:
    """Stop the recorded processes, last started first; the names of those that were running."""
    stopped = []
    for record in reversed(state.read()):
        # wsmon drains its connections first (drain_seconds, 10 s by default).
        if supervise.stop(record, timeout=20.0 if record.name == "wsmon" else 10.0):
            progress(f"stopped {TITLES.get(record.name, record.name)} (pid {record.pid})")
            stopped.append(record.name)
    state.record.unlink(missing_ok=True)
    return stopped


def describe(parts: list[Part], state: State) -> Iterator[str]:
    """What a user reads once the stack is up: every URL, where the data and mails are."""
    notes: dict[str, str] = {
        "wsmon": "clients on /ws; /metrics, /api/health, /runbooks",
        "alertmanager": "silences; `wsmon alerts list` reads it",
        "smtp": f"every alert mail is a file in {state.mail}/new",
        "grafana": "dashboards in the wsmon folder",
    }
    for part in parts:
        note = notes.get(part.name, "")
        if part.name == "prometheus":
            retention = _flag(part.argv, "--storage.tsdb.retention.time")
            note = f"keeps {retention} of history in {state.data / 'prometheus'}"
        yield f"  {part.title:<13} {part.url:<24} {note}".rstrip()
    if not any(part.name == "grafana" for part in parts):
        yield (
            "  Grafana       not started: no grafana-server on the PATH (import"
            " deploy/grafana/dashboards/*.json into yours)"
        )


def _flag(argv: tuple[str, ...], name: str) -> str:
    for argument in argv:
        if argument.startswith(name + "="):
            return argument.split("=", 1)[1]
    return "?"
