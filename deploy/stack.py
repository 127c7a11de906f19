"""`make stack`: the deploy bundle's parts running on this machine, on loopback, without Docker.

The stack is the bundle itself, rendered for 127.0.0.1 and the chosen ports into the state
directory: Prometheus and Alertmanager start with the argv of the bundle's systemd units (so the
30-day retention is the very flag the units pass), wsmon with the bundle's wsmon.yaml (held to
loopback by a flag), Alertmanager mails an SMTP sink (aiosmtpd's Maildir handler, so every mail
is kept as a file), and Grafana with the bundle's provisioning when a `grafana-server` is on the
PATH. The state directory keeps Prometheus' data between runs: the history grows to 30 days.

With `instances` above 1 it starts Debian's redis-server too (loopback, no persistence) and that
many wsmon servers, each with `--broker` to it and on the port after the one before: the broker
relays chat, rooms and broadcasts between them, and Prometheus scrapes them all under job wsmon.
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
    "redis": "redis",
    "wsmon": "wsmon",
    "alertmanager": "alertmanager",
    "prometheus": "prometheus",
    "grafana": "grafana",
}
TITLES: Final = {
    "smtp": "SMTP sink",
    "redis": "Redis",
    "wsmon": "wsmon",
    "alertmanager": "Alertmanager",
    "prometheus": "Prometheus",
    "grafana": "Grafana",
}
# The Debian packages' names first (prometheus-alertmanager), then upstream's.
BINARIES: Final = {
    "prometheus": ("prometheus",),
    "alertmanager": ("prometheus-alertmanager", "alertmanager"),
    "redis": ("redis-server",),
}
# The stack's own defaults where the bundle's port would meet a system service: Debian's
# redis-server package starts one on 6379 when it is installed (`make tools`).
STACK_PORTS: Final = {"redis": 6380}
# Parts that only start with more than one wsmon instance.
BROKER_PARTS: Final = ("redis",)
MAX_INSTANCES: Final = 8


def instance_names(instances: int) -> list[str]:
    """The wsmon servers' part names: `wsmon` (as with one; `wsmon thresholds --stack-dir` finds
    it by that name), then wsmon-2, wsmon-3, ..."""
    return ["wsmon", *(f"wsmon-{n}" for n in range(2, instances + 1))]


def title(name: str) -> str:
    return TITLES.get(name, name)


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
        return title(self.name)

    @property
    def url(self) -> str:
        if self.name == "redis":
            return f"redis://{HOST}:{self.port}/0"
        scheme = "smtp" if self.ready_path is None else "http"
        return f"{scheme}://{HOST}:{self.port}"

    def ready(self) -> bool:
        if self.name == "redis":
            return _redis_pongs(self.port)
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


def _redis_pongs(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=2) as connection:
            connection.sendall(b"PING\r\n")
            return connection.recv(7).startswith(b"+PONG")
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
    thresholds: tuple[Threshold, ...], chosen: Mapping[str, int | None], instances: int = 1
) -> dict[str, int]:
    """Each part's port: the one chosen, else the bundle's (alerting/config.libsonnet), else
    the stack's own (STACK_PORTS). wsmon-2 and the next take the ports after wsmon's; Redis is
    a part only with more than one instance."""
    if not 1 <= instances <= MAX_INSTANCES:
        raise StackError(f"--instances: from 1 to {MAX_INSTANCES}, not {instances}")
    config = alerting.config(thresholds)
    bundle: Mapping[str, int] = {**config["deploy"]["ports"], **STACK_PORTS}
    ports: dict[str, int] = {}
    for part, key in PORT_KEYS.items():
        if part in BROKER_PARTS and instances == 1:
            continue
        ports[part] = chosen.get(part) or bundle[key]
        if part == "wsmon":
            for n, name in enumerate(instance_names(instances)[1:], start=1):
                ports[name] = ports["wsmon"] + n
    taken: dict[int, str] = {}
    for part, port in ports.items():
        if port > 65535:
            raise StackError(f"{title(part)} would take port {port}: pick a lower --wsmon-port")
        if port in taken:
            raise StackError(f"{title(taken[port])} and {title(part)} are both given port {port}")
        taken[port] = part
    return ports


def port_option(part: str) -> str:
    """The flag that moves a part's port (wsmon-2 and the next follow --wsmon-port)."""
    return "--wsmon-port" if part.startswith("wsmon") else f"--{part}-port"


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
    which is the one to edit with `wsmon thresholds --file` (and `--stack-dir` to apply it).
    Every wsmon server in `ports` (wsmon, wsmon-2, ...) is started; with more than one, each
    with `--broker` to the stack's Redis, which `ports` then names."""
    names = [name for name in ports if name.startswith("wsmon")]
    brokered = len(names) > 1
    binaries = {
        part: find_binary(part) for part in BINARIES if brokered or part not in BROKER_PARTS
    }
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
            "ports": {key: ports[part] for part, key in PORT_KEYS.items() if part in ports},
            # Prometheus scrapes every instance under job wsmon, the probe job each one too.
            "wsmonPeerPorts": [ports[name] for name in names[1:]],
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
    # The bundle's wsmon.yaml listens on every address, as an installed server does; the stack
    # stays on loopback (a flag outranks the file), and checks no tokens: its log says so every
    # minute. More than one: each on its own port, all publishing to and hearing from Redis.
    servers = [
        Part(
            name,
            (
                *(*wsmon, "--host", HOST, "--no-auth"),
                *(("--port", str(ports[name]), "--broker", _redis_url(ports)) if brokered else ()),
            ),
            ports[name],
            "/readyz",
        )
        for name in names
    ]
    redis: list[Part] = []
    if brokered:
        # Pub/sub only: nothing to keep, so nothing written (no snapshot, no append-only file);
        # its working directory is in the state directory all the same.
        (data / "redis").mkdir(parents=True, exist_ok=True)
        argv = (
            binaries["redis"],
            *("--bind", HOST, "--port", str(ports["redis"])),
            *("--save", "", "--appendonly", "no", "--dir", str(data / "redis")),
        )
        redis.append(Part("redis", argv, ports["redis"], None))
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
        *redis,
        *servers,
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


def _redis_url(ports: Mapping[str, int]) -> str:
    return f"redis://{HOST}:{ports['redis']}/0"


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
                f"port {port} ({title(name)}) is in use on {HOST}: stop what listens there,"
                f" or pick another with {port_option(name)}"
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
        draining = record.name.startswith("wsmon")
        if supervise.stop(record, timeout=20.0 if draining else 10.0):
            progress(f"stopped {title(record.name)} (pid {record.pid})")
            stopped.append(record.name)
    state.record.unlink(missing_ok=True)
    return stopped


def describe(parts: list[Part], state: State) -> Iterator[str]:
    """What a user reads once the stack is up: every URL, where the data and mails are."""
    servers = [part.name for part in parts if part.name.startswith("wsmon")]
    notes: dict[str, str] = {
        "alertmanager": "silences; `wsmon alerts list` reads it",
        "smtp": f"every alert mail is a file in {state.mail}/new",
        "grafana": "dashboards in the wsmon folder",
        "redis": f"the broker: {', '.join(servers)} relay chat, rooms and broadcasts through it",
    }
    for part in parts:
        note = notes.get(part.name, "")
        if part.name.startswith("wsmon"):
            note = "clients on /ws; /metrics, /api/health, /runbooks"
        if part.name == "prometheus":
            retention = _flag(part.argv, "--storage.tsdb.retention.time")
            note = f"keeps {retention} of history in {state.data / 'prometheus'}"
        yield f"  {part.title:<13} {part.url:<26} {note}".rstrip()
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
