"""Server settings: one table of options, read from flags, `WSMON_*` variables and a YAML file.

Precedence is flags > environment > file > defaults. Every value is checked once, at start-up, and a
bad one stops the server with a message that names where it came from, the key and the problem.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from wsmon import keepalive
from wsmon.yamlfile import YamlFileError, read_yaml, shown

from . import origins

ENV_PREFIX = "WSMON_"


class ConfigError(ValueError):
    """A setting that cannot be used; the message names its source and key."""


def _usable_cpus() -> int:
    # sched_getaffinity is Linux's; elsewhere (where only --help runs) count the CPUs.
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@dataclasses.dataclass(frozen=True)
class Settings:
    host: str = "127.0.0.1"
    port: int = 8080
    # The CPUs this process may run on (affinity, cgroup cpusets), not every CPU of the host.
    workers: int = dataclasses.field(default_factory=lambda: min(max(_usable_cpus(), 1), 256))
    worker_capacity: int = 10_000
    max_message_bytes: int = 64 * 1024
    rate_limit: int = 1000
    send_buffer_limit: int = 1024 * 1024
    keepalive_seconds: int = keepalive.DEFAULT_SECONDS
    drain_seconds: float = 10.0
    log_level: str = "info"
    # Empty: the packaged alerting/thresholds.yaml.
    thresholds_file: str = ""
    # Empty: a browser may connect only from the server's own origin (the /testing page).
    allowed_origins: str = ""
    handshake_timeout_seconds: float = 10.0
    # The extreme load profile opens 1,000 connections at once from one address (with its
    # probe and scrapes): the burst, ten seconds' worth, lets it through.
    handshake_rate_limit: int = 200
    # Off by default: behind a proxy or a NAT every client has the same address, and one user
    # may rightly hold many tabs; docs/security.md suggests values.
    max_connections_per_address: int = 0
    max_connections_per_user: int = 0
    # Empty: one instance, no broker (its workers relay through the supervisor).
    broker: str = ""
    broker_password_file: str = ""
    broker_channel: str = "wsmon"
    # Empty: /metrics and the health endpoints are served on the public port.
    metrics_listen: str = ""
    metrics_web_config_file: str = ""
    # Exactly one way of checking tokens, or no_auth (development only): see check_auth.
    auth_jwt_secret_file: str = ""
    auth_jwt_public_key_file: str = ""
    auth_tokens_file: str = ""
    auth_audience: str = ""
    no_auth: bool = False

    def to_mapping(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Option:
    name: str
    kind: type
    check: Callable[[Any], bool]
    requirement: str
    help: str


_LOG_LEVELS = ("debug", "info", "warning", "error")
# Variables of the other wsmon commands (`wsmon alerts`, `wsmon alerts render-config`,
# `wsmon export`, `wsmon test`, `wsmon loadtest`), which share the WSMON_ prefix but are not
# server settings.
_OTHER_COMMANDS_VARIABLES = (
    "WSMON_ALERTMANAGER_URL",
    "WSMON_SMTP_",
    "WSMON_PROMETHEUS_URL",
    "WSMON_TOKEN_FILE",
)


OPTIONS: tuple[Option, ...] = (
    Option("host", str, lambda v: bool(v), "a non-empty address", "address to listen on"),
    Option(
        "port",
        int,
        lambda v: 0 <= v <= 65535,
        "an integer 0-65535 (0: any free port)",
        "TCP port for /ws, /metrics and the health endpoints",
    ),
    Option(
        "workers",
        int,
        lambda v: 1 <= v <= 256,
        "an integer 1-256",
        "worker processes sharing the port",
    ),
    Option(
        "worker_capacity",
        int,
        lambda v: v >= 1,
        "an integer >= 1",
        "connections one worker holds before refusing with close code 1013",
    ),
    Option(
        "max_message_bytes",
        int,
        lambda v: 128 <= v <= 64 * 1024 * 1024,
        "an integer 128-67108864",
        "largest frame accepted; larger closes with 1009",
    ),
    Option(
        "rate_limit",
        int,
        lambda v: v >= 1,
        "an integer >= 1",
        "messages one connection may send per second; the rest get rate_limited errors",
    ),
    Option(
        "send_buffer_limit",
        int,
        lambda v: v >= 4096,
        "an integer >= 4096",
        "bytes queued for one slow client before it is disconnected with 1008",
    ),
    Option(
        "keepalive_seconds",
        int,
        lambda v: 0 <= v <= 32767,
        "an integer 0-32767 (0: off)",
        "idle seconds before TCP keepalive probes a silent peer (3 missed probes close it)",
    ),
    Option(
        "drain_seconds",
        float,
        lambda v: v > 0,
        "a number > 0",
        "how long SIGTERM waits for connections to close before exiting",
    ),
    Option(
        "log_level",
        str,
        lambda v: v in _LOG_LEVELS,
        "one of " + ", ".join(_LOG_LEVELS),
        "logging verbosity",
    ),
    Option(
        "thresholds_file",
        str,
        lambda v: True,
        "a path (empty: the packaged thresholds)",
        "alert thresholds /api/health judges by (empty: the packaged alerting/thresholds.yaml)",
    ),
    Option(
        "allowed_origins",
        str,
        lambda v: all(origins.valid_pattern(p) for p in origins.split(v)),
        "comma-separated origins: scheme://host[:port], scheme://*.domain, or *",
        "origins browsers may open WebSockets from (https://app.example.com,"
        " https://*.example.com, or * for any); other origins get 403. Empty: only the"
        " server's own; clients that send no Origin (servers, CLIs) always pass",
    ),
    Option(
        "handshake_timeout_seconds",
        float,
        lambda v: v > 0,
        "a number > 0",
        "seconds a new connection may stay silent before sending its request; then it is cut",
    ),
    Option(
        "handshake_rate_limit",
        int,
        lambda v: v >= 0,
        "an integer >= 0 (0: off)",
        "new connections one client address may open per second (bursts of ten seconds'"
        " worth pass); the rest are closed at once",
    ),
    Option(
        "max_connections_per_address",
        int,
        lambda v: v >= 0,
        "an integer >= 0 (0: off)",
        "connections one client address may hold open at once; one more is answered 429",
    ),
    Option(
        "max_connections_per_user",
        int,
        lambda v: v >= 0,
        "an integer >= 0 (0: off)",
        "connections one token's user may hold open at once; one more is answered 429",
    ),
    Option(
        "metrics_listen",
        str,
        lambda v: not v or _is_listen_address(v),
        "host:port ([::1]:port for IPv6), or empty",
        "a second address for /metrics, /healthz, /readyz and /probe, which the public port"
        " then no longer serves (empty: they are on the public port)",
    ),
    Option(
        "metrics_web_config_file",
        str,
        lambda v: True,
        "a path",
        "TLS and basic auth for metrics_listen, in the format of Prometheus'"
        " --web.config.file (tls_server_config, basic_auth_users with bcrypt hashes)",
    ),
    Option(
        "broker",
        str,
        lambda v: not v or broker_url_ok(v),
        "redis://[user:password@]host:port/db, rediss://… (TLS) or unix://path, or empty",
        "Redis that delivers between wsmon instances (chat, notify, publish, broadcast reach"
        " every instance's clients); empty: this instance alone",
    ),
    Option(
        "broker_password_file",
        str,
        lambda v: True,
        "a path",
        "file holding the broker's password (instead of putting it in the URL)",
    ),
    Option(
        "broker_channel",
        str,
        lambda v: bool(re.fullmatch(r"[A-Za-z0-9_.:-]{1,64}", v)),
        "1-64 letters, digits, _ . : -",
        "prefix of the Redis pub/sub channel the instances of one cluster share (channels are"
        " not per database: two clusters on one Redis need two prefixes)",
    ),
    Option(
        "auth_jwt_secret_file",
        str,
        lambda v: True,
        "a path",
        "file holding the HS256 secret that signs clients' JWTs (at least 32 bytes)",
    ),
    Option(
        "auth_jwt_public_key_file",
        str,
        lambda v: True,
        "a path",
        "PEM public key that verifies clients' JWTs: RSA for RS256, P-256 for ES256",
    ),
    Option(
        "auth_tokens_file",
        str,
        lambda v: True,
        "a path",
        "YAML list of static tokens by SHA-256, with their user, roles and prefixes",
    ),
    Option(
        "auth_audience",
        str,
        lambda v: True,
        "a string",
        "the `aud` a JWT must name (empty: not checked)",
    ),
    Option(
        "no_auth",
        bool,
        lambda v: True,
        "true or false",
        "development only: accept every client without a token (logged loudly at start and"
        " every minute)",
    ),
)
OPTIONS_BY_NAME = {option.name: option for option in OPTIONS}


def _coerce(option: Option, raw: Any, source: str) -> Any:
    """Turn a raw value (YAML scalar, environment string or flag) into the option's type."""
    value: Any
    try:
        if raw is None or (isinstance(raw, bool) and option.kind is not bool):
            raise ValueError
        if option.kind is bool:
            value = _boolean(raw)
        elif option.kind is int:
            if isinstance(raw, float) and not raw.is_integer():
                raise ValueError
            value = int(raw)
        elif option.kind is float:
            value = float(raw)
        else:
            if not isinstance(raw, str):
                raise ValueError
            value = raw.strip()
            if option.name == "log_level":
                value = value.lower()
    except (TypeError, ValueError, OverflowError):  # OverflowError: float() of a huge integer
        raise ConfigError(
            f"{source}: {option.name}: must be {option.requirement}, got {shown(raw)}"
        ) from None
    if not option.check(value):
        raise ConfigError(
            f"{source}: {option.name}: must be {option.requirement}, got {shown(raw)}"
        )
    return value


def _boolean(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.strip().lower() in _TRUE + _FALSE:
        return raw.strip().lower() in _TRUE
    raise ValueError


_TRUE, _FALSE = ("true", "yes", "1", "on"), ("false", "no", "0", "off")
AUTH_METHODS = ("auth_jwt_secret_file", "auth_jwt_public_key_file", "auth_tokens_file")


def check_auth(settings: Settings) -> None:
    """Exactly one way of checking tokens, or no_auth: a server that accepts everyone must be
    asked for by name, never be what a missing setting gives."""
    given = [name for name in AUTH_METHODS if getattr(settings, name)]
    if settings.no_auth and given:
        raise ConfigError(f"no_auth and {given[0]} are both set: choose one")
    if len(given) > 1:
        raise ConfigError(f"{' and '.join(given)} are both set: choose one way to check tokens")
    if not given and not settings.no_auth:
        raise ConfigError(
            "no authentication configured: set auth_jwt_secret_file, auth_jwt_public_key_file"
            " or auth_tokens_file (flags, WSMON_* variables or the config file), or --no-auth"
            " for development"
        )


def broker_url_ok(url: str) -> bool:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme in ("redis", "rediss", "unix") and bool(parts.hostname or parts.path)


def listen_address(text: str) -> tuple[str, int]:
    """`host:port` or `[v6 host]:port` as a (host, port) pair; ValueError when it is neither."""
    host, separator, port = text.rpartition(":")
    if not separator or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(text)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(text)  # an IPv6 address needs its brackets: [::1]:9108
    return host, int(port)


def _is_listen_address(text: str) -> bool:
    try:
        listen_address(text)
    except ValueError:
        return False
    return True


def check_broker(settings: Settings) -> None:
    """A broker password file goes with a broker, and can be read."""
    path = settings.broker_password_file
    if not path:
        return
    if not settings.broker:
        raise ConfigError("broker_password_file is set but broker is not: set broker too")
    if urllib.parse.urlsplit(settings.broker).password is not None:
        raise ConfigError(
            "broker names a password and broker_password_file is set too: give it in one place"
        )
    try:
        Path(path).read_text()
    except OSError as exc:
        raise ConfigError(
            f"{path}: cannot read the broker password file: {exc.strerror or exc}"
        ) from None


def check_listeners(settings: Settings) -> None:
    """The operations listener's settings agree with each other and with the public one."""
    if settings.metrics_web_config_file and not settings.metrics_listen:
        raise ConfigError(
            "metrics_web_config_file is set but metrics_listen is not: the web config protects"
            " the second address only; set metrics_listen too (for example 127.0.0.1:9108)"
        )
    if settings.metrics_listen:
        host, port = listen_address(settings.metrics_listen)
        if port and port == settings.port and host in (settings.host, "0.0.0.0", "::"):
            raise ConfigError(
                f"metrics_listen {settings.metrics_listen} is the public address"
                f" {settings.host}:{settings.port}: give it a port of its own"
            )


def _unknown_key(key: str, source: str) -> ConfigError:
    close = difflib.get_close_matches(key, OPTIONS_BY_NAME, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    known = ", ".join(OPTIONS_BY_NAME)
    return ConfigError(f"{source}: unknown key {key!r}{hint}; known keys: {known}")


def read_file(path: Path) -> dict[str, Any]:
    """Read a YAML settings file: a mapping of option names to values."""
    source = str(path)
    try:
        data = read_yaml(path, "config file")
    except YamlFileError as exc:
        raise ConfigError(str(exc)) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: must be a mapping of settings, got {type(data).__name__}")
    values: dict[str, Any] = {}
    for key, raw in data.items():
        name = str(key).replace("-", "_")
        if name not in OPTIONS_BY_NAME:
            raise _unknown_key(str(key), source)
        values[name] = _coerce(OPTIONS_BY_NAME[name], raw, source)
    return values


# Kubernetes gives every pod variables for each Service in its namespace; a Service named `wsmon`
# brings WSMON_PORT=tcp://10.0.0.11:8080, WSMON_SERVICE_HOST, WSMON_PORT_8080_TCP_ADDR and
# friends. They describe the Service, not this server's settings.
_SERVICE_LINK = re.compile(
    r"^WSMON_(SERVICE_HOST|SERVICE_PORT(_\w+)?|PORT_\d+_(TCP|UDP|SCTP)(_(PROTO|PORT|ADDR))?)$"
)
_SERVICE_URL = re.compile(r"^(tcp|udp|sctp)://")


def _is_service_link(key: str, raw: str) -> bool:
    return bool(_SERVICE_LINK.match(key)) or (key == "WSMON_PORT" and bool(_SERVICE_URL.match(raw)))


def read_environment(environ: Mapping[str, str], warnings: list[str]) -> dict[str, Any]:
    """Read `WSMON_<OPTION>` variables. A bad value of a known setting is an error; Kubernetes
    service-link variables and unknown `WSMON_` variables are ignored, with a warning each kind
    appended to `warnings`: a stray variable must not keep a pod from starting."""
    values: dict[str, Any] = {}
    links: list[str] = []
    for key, raw in sorted(environ.items()):
        if (
            not key.startswith(ENV_PREFIX)
            or key == "WSMON_CONFIG"
            or key.startswith(_OTHER_COMMANDS_VARIABLES)
        ):
            continue
        if _is_service_link(key, raw):
            links.append(key)
            continue
        name = key[len(ENV_PREFIX) :].lower()
        if name not in OPTIONS_BY_NAME:
            close = difflib.get_close_matches(name, OPTIONS_BY_NAME, n=1)
            hint = f" (did you mean {ENV_PREFIX}{close[0].upper()}?)" if close else ""
            warnings.append(f"ignoring unknown environment variable {key}{hint}")
            continue
        values[name] = _coerce(OPTIONS_BY_NAME[name], raw, f"environment {key}")
    if links:
        warnings.append(
            "ignoring Kubernetes service-link variables " + ", ".join(links) + " (set"
            " enableServiceLinks: false in the pod spec, or name the Service other than wsmon)"
        )
    return values


def load_settings(
    flags: Mapping[str, Any],
    environ: Mapping[str, str],
    config_file: Path | None,
    warnings: list[str] | None = None,
) -> Settings:
    """Merge the sources, flags winning; `flags` holds only the flags the user actually gave.

    What was ignored (see read_environment) is appended to `warnings`, for the caller to log once
    logging is set up with the resulting log level."""
    if config_file is None and environ.get("WSMON_CONFIG"):
        config_file = Path(environ["WSMON_CONFIG"])
    merged: dict[str, Any] = {}
    if config_file is not None:
        merged.update(read_file(config_file))
    merged.update(read_environment(environ, [] if warnings is None else warnings))
    for name, raw in flags.items():
        if raw is not None:
            merged[name] = _coerce(OPTIONS_BY_NAME[name], raw, f"--{name.replace('_', '-')}")
    return Settings(**merged)
