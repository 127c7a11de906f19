"""`wsmon serve`: its flags, generated from the settings table, and start-up."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from wsmon.thresholds import ThresholdsError

from .config import OPTIONS, ConfigError, Settings, load_settings
from .health import load_thresholds
from .logs import configure_logging


def _settings_options(command: Callable[..., None]) -> Callable[..., None]:
    """One flag per setting, generated from the settings table so help and defaults never drift."""
    defaults = Settings().to_mapping()
    for option in reversed(OPTIONS):
        flag = "--" + option.name.replace("_", "-")
        default = "one per CPU" if option.name == "workers" else defaults[option.name]
        text = f"{option.help[0].upper()}{option.help[1:]}. [env WSMON_{option.name.upper()}]"
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
    """Serve /ws, /ws/echo, /metrics, /healthz, /readyz and /api/health on one port.

    Settings come from flags, then WSMON_* environment variables, then the --config file, then
    defaults. Examples:

    \b
      wsmon serve                                   # 127.0.0.1:8080, one worker per CPU
      wsmon serve --host 0.0.0.0 --workers 4 --worker-capacity 20000
      WSMON_PORT=9000 wsmon serve --config /etc/wsmon/wsmon.yaml

    SIGTERM (or Ctrl-C) drains: clients get close code 1001 and the server exits within
    --drain-seconds.
    """
    try:
        settings = load_settings(flags, os.environ, config_file)
        thresholds = load_thresholds(settings.thresholds_file)
    except (ConfigError, ThresholdsError) as exc:
        raise click.UsageError(str(exc)) from None
    configure_logging(settings.log_level, "supervisor")
    from .supervisor import ListenError
    from .supervisor import serve as run_pool

    try:
        run_pool(settings, thresholds)
    except ListenError as exc:
        raise click.ClickException(
            f"cannot listen on {settings.host}:{settings.port}: {exc.strerror}"
        ) from None
