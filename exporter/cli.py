"""`wsmon serve`: its flags, generated from the settings table, and start-up."""

from __future__ import annotations

import errno
import logging
import os
import secrets
import socket
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from wsmon.limits import SPARE, raise_open_file_limit
from wsmon.thresholds import ThresholdsError

from .config import (
    OPTIONS,
    ConfigError,
    Settings,
    check_auth,
    check_broker,
    check_listeners,
    load_settings,
)
from .health import load_thresholds
from .logs import configure_logging

if TYPE_CHECKING:  # imported when serving (past the platform check)
    from .handoff import ListenError

log = logging.getLogger(__name__)


def _settings_options(command: Callable[..., None]) -> Callable[..., None]:
    """One flag per setting, generated from the settings table so help and defaults never drift."""
    defaults = Settings().to_mapping()
    for option in reversed(OPTIONS):
        flag = "--" + option.name.replace("_", "-")
        default = "one per CPU" if option.name == "workers" else defaults[option.name]
        text = f"{option.help[0].upper()}{option.help[1:]}. [env WSMON_{option.name.upper()}]"
        if option.kind is bool:  # a switch: given or not (None: not given, the others decide)
            command = click.option(flag, option.name, is_flag=True, default=None, help=text)(
                command
            )
            continue
        command = click.option(
            flag,
            option.name,
            type=option.kind,
            help=f"{text} [default: {default}]",
        )(command)
    return command


@click.command()
@_settings_options
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path),
    help="YAML file of settings (keys as in the flags, with underscores). [env WSMON_CONFIG]",
)
def serve(config_file: Path | None, **flags: Any) -> None:
    """Serve /ws, /ws/echo, /metrics, /runbooks, /healthz, /readyz and /api/health.

    All on one port, or /metrics, /healthz, /readyz and /probe on a second one (--metrics-listen)
    with TLS and basic auth from a Prometheus web config file (--metrics-web-config-file).

    Settings come from flags, then WSMON_* environment variables, then the --config file, then
    defaults. Examples:

    \b
      wsmon serve                                   # 127.0.0.1:8080, one worker per CPU
      wsmon serve --host 0.0.0.0 --workers 4 --worker-capacity 20000
      WSMON_PORT=9000 wsmon serve --config /etc/wsmon/wsmon.yaml
      wsmon serve --host 0.0.0.0 --metrics-listen 10.0.0.5:9108 \\
          --metrics-web-config-file /etc/wsmon/web.yml --auth-jwt-secret-file /etc/wsmon/jwt.secret

    SIGTERM (or Ctrl-C) drains: clients get close code 1001 and the server exits within
    --drain-seconds. Unknown WSMON_* variables (and Kubernetes' service-link variables of a
    Service named wsmon) are ignored with a warning; a bad value of a setting stops the server.
    Linux only: workers receive connections over Unix sockets (SCM_RIGHTS).
    """
    if not sys.platform.startswith("linux"):
        raise click.ClickException(
            f"wsmon serve runs on Linux only (this is {sys.platform}): the supervisor hands each"
            " connection to a worker process over a Unix socket (SCM_RIGHTS) and tunes TCP"
            " keepalive with Linux socket options. Run it in a Linux container or VM; the other"
            " commands (loadtest, rules, alerts) work here."
        )
    # Imported here, past the platform check: PyJWT brings urllib.request, which on macOS loads a
    # module a Linux-only server has no use for.
    from . import auth, webconfig

    warnings: list[str] = []
    try:
        settings = load_settings(flags, os.environ, config_file, warnings)
        thresholds = load_thresholds(settings.thresholds_file)
        check_auth(settings)
        check_listeners(settings)
        check_broker(settings)
        # Read once here, so a bad key, tokens or web config file stops the start, not each worker.
        auth.from_settings(settings)
        web_config = (
            webconfig.load(Path(settings.metrics_web_config_file))
            if settings.metrics_web_config_file
            else None
        )
    except (ConfigError, ThresholdsError, auth.AuthConfigError, webconfig.WebConfigError) as exc:
        raise click.UsageError(str(exc)) from None
    configure_logging(settings.log_level, "supervisor")
    for warning in warnings:
        log.warning("%s", warning)
    if settings.no_auth:
        log.warning(auth.NO_AUTH_WARNING)
    # Inherited by the workers: each may hold worker_capacity connections, one descriptor each.
    short = raise_open_file_limit(settings.worker_capacity)
    if short is not None:
        log.warning(
            "the open-file limit is %d, below worker_capacity %d + %d: a worker past it fails to"
            " take connections (raise it: systemd LimitNOFILE=, ulimit -n, or a lower"
            " worker_capacity)",
            short,
            settings.worker_capacity,
            SPARE,
        )
    # The pool's own probes' key, which the workers inherit (auth.PROBE_KEY_VARIABLE).
    os.environ[auth.PROBE_KEY_VARIABLE] = secrets.token_urlsafe(32)
    from .handoff import ListenError
    from .supervisor import serve as run_pool

    try:
        run_pool(
            settings, thresholds, web_config is not None and web_config.ssl_context() is not None
        )
    except ListenError as exc:
        raise click.ClickException(
            f"cannot listen on {exc.address}: {_listen_problem(exc)}"
        ) from None


def _listen_problem(exc: ListenError) -> str:
    """Why the port cannot be bound and what to do, in wsmon's words, not the C library's."""
    if exc.errno == errno.EADDRINUSE:
        return f"another process listens on that port (stop it, or pick another {exc.port_flag})"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"no network interface of this machine has that address (check {exc.host_flag})"
    if exc.errno == errno.EACCES:
        return f"ports below 1024 need root or CAP_NET_BIND_SERVICE (pick another {exc.port_flag})"
    if exc.errno in (socket.EAI_NONAME, socket.EAI_AGAIN):
        return f"the host name does not resolve (check {exc.host_flag})"
    return f"the system refused ({exc.strerror})"
