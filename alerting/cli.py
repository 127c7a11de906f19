"""`wsmon rules` builds the alerting files; `wsmon alerts` lists, acknowledges, unacknowledges."""

from __future__ import annotations

import getpass
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import click

from wsmon import extras
from wsmon.thresholds import (
    DEFAULT_THRESHOLDS,
    Threshold,
    ThresholdsError,
    duration_seconds,
    load,
)

from . import smtp
from .amclient import Alert, AlertmanagerError, Client, Silence, Unreachable, check_url

DEFAULT_ALERTMANAGER: Final = "http://127.0.0.1:9093"
DEFAULT_OUTPUT: Final = Path("alerting/generated")


class Unavailable(click.ClickException):
    """Alertmanager did not answer: exit 2, so scripts can tell it from a refused request."""

    exit_code = 2


# -- wsmon rules ---------------------------------------------------------------------------------


def _require_build(command: str) -> None:
    """The Jsonnet build is imported only by the commands that render, so that `wsmon alerts
    list|ack|unack` work on a server-only install; those commands check for it first."""
    unavailable = extras.problem("alerting", command)
    if unavailable is not None:
        raise click.ClickException(unavailable)


def base_url(_ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Click callback of a base-URL option (here and in `wsmon dashboards build`)."""
    if value is not None and not value.startswith(("http://", "https://")):
        raise click.BadParameter(f"must be an http:// or https:// URL, got {value!r}")
    return None if value is None else value.rstrip("/")


@click.group()
def rules() -> None:
    """Build Prometheus rules, promtool tests and the Alertmanager config from thresholds.yaml."""


def url_option(flag: str, help_text: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """A base-URL option, checked and without its trailing slash (rules and dashboards builds)."""
    return click.option(flag, metavar="URL", callback=base_url, help=help_text)


thresholds_option: Final = click.option(
    "--thresholds",
    "thresholds_file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=DEFAULT_THRESHOLDS,
    show_default=True,
    help="The thresholds file: what the alerts fire at.",
)


def build_options(
    output: Path, output_help: str
) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """The options every generated-files build takes: --thresholds, --output, --check."""

    def apply(command: Callable[..., None]) -> Callable[..., None]:
        for option in reversed(
            (
                thresholds_option,
                click.option(
                    "--output",
                    type=click.Path(path_type=Path, file_okay=False),
                    default=output,
                    show_default=True,
                    help=output_help,
                ),
                click.option(
                    "--check",
                    is_flag=True,
                    help="Write nothing; exit 1 if --output is out of date.",
                ),
            )
        ):
            command = option(command)
        return command

    return apply


def run_build(
    render: Callable[[tuple[Threshold, ...], dict[str, Any]], dict[str, str]],
    thresholds_file: Path,
    links: dict[str, str | None],
    output: Path,
    check: bool,
    make_target: str,
) -> None:
    """Render from the thresholds file (links given override the config's), then write the files
    to `output`, or with `check` only say whether they are up to date there."""
    from . import build  # present: the commands that render are refused without Jsonnet

    overrides = {key: url for key, url in links.items() if url is not None}
    try:
        files = render(load(thresholds_file), overrides)
    except ThresholdsError as exc:
        raise click.ClickException(str(exc)) from None
    if check:
        differ = build.stale(files, output)
        if differ:
            names = ", ".join(differ)
            raise click.ClickException(
                f"{output}: out of date: {names}; run `{make_target}` and commit the result"
            )
        click.echo(f"{output}: up to date")
        return
    build.write(files, output)
    click.echo(f"wrote {', '.join(sorted(files))} to {output}")


@rules.command("build")
@build_options(
    DEFAULT_OUTPUT, "Directory for rules.yaml, alerts_test.yaml, alertmanager.yml and wsmon.tmpl."
)
@url_option(
    "--runbook-url",
    "Base of every alert's runbook_url; '#alertname' is appended. [default: the firing"
    " server's own page, http://INSTANCE/runbooks]",
)
@url_option(
    "--dashboard-url",
    "Grafana's address, base of every alert's dashboard_url. [default: http://localhost:3000]",
)
def build_command(
    thresholds_file: Path,
    output: Path,
    check: bool,
    runbook_url: str | None,
    dashboard_url: str | None,
) -> None:
    """Validate thresholds.yaml and generate every alerting file from it.

    A bad entry stops the build with a message naming the entry and the field. The Alertmanager
    config has placeholder SMTP settings; `wsmon alerts render-config` fills in real ones.

    \b
      wsmon rules build
      wsmon rules build --runbook-url https://wiki.example.com/wsmon/runbooks \\
                        --dashboard-url https://grafana.example.com --output /etc/prometheus/wsmon
    """
    from . import build

    links = {"runbookBaseUrl": runbook_url, "dashboardBaseUrl": dashboard_url}
    run_build(build.render, thresholds_file, links, output, check, "make rules")


# -- wsmon alerts --------------------------------------------------------------------------------


@click.group()
def alerts() -> None:
    """See and acknowledge wsmon's alerts in Alertmanager (its v2 API); set who gets the mails.

    \b
      wsmon alerts list
      wsmon alerts ack WsmonMessageErrorRateHigh --duration 2h --comment "deploy rollback"
      wsmon alerts ack WsmonPoolUtilizationHigh --matcher instance=ws-3:8080 --duration 30m \\
          --comment "scaling out"
      wsmon alerts unack 8d0e2a1c-...
      wsmon alerts email set --to oncall@example.com     # then: wsmon alerts email test
    """


def _alertmanager_url(_ctx: click.Context, _param: click.Parameter, url: str) -> str:
    """A URL without http:// or https:// is a usage error (exit 2), before any request."""
    try:
        return check_url(url)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _alertmanager_option(command: Callable[..., None]) -> Callable[..., None]:
    return click.option(
        "--alertmanager",
        "alertmanager_url",
        envvar="WSMON_ALERTMANAGER_URL",
        default=DEFAULT_ALERTMANAGER,
        show_default=True,
        callback=_alertmanager_url,
        help="Alertmanager base URL, http:// or https://. [env WSMON_ALERTMANAGER_URL]",
    )(command)


def _call(action: Callable[[], Any]) -> Any:
    try:
        return action()
    except Unreachable as exc:
        raise Unavailable(str(exc)) from None
    except AlertmanagerError as exc:
        raise click.ClickException(str(exc)) from None


def _state(alert: Alert) -> str:
    if alert.silenced_by:
        return "acknowledged"
    if alert.inhibited_by:
        return "inhibited"
    return "active"


def _row(alert: Alert, silences: dict[str, Silence]) -> dict[str, Any]:
    acks = [asdict(silences[i]) for i in alert.silenced_by if i in silences]
    return {
        "alertname": alert.name,
        "state": _state(alert),
        "severity": alert.labels.get("severity", ""),
        "instance": alert.labels.get("instance", ""),
        "since": alert.starts_at,
        "value": alert.annotations.get("value", ""),
        "summary": alert.annotations.get("summary", ""),
        "acknowledgements": acks,
    }


def _print_rows(rows: Sequence[dict[str, Any]]) -> None:
    for state in ("active", "acknowledged", "inhibited"):
        chosen = [row for row in rows if row["state"] == state]
        click.echo(f"{state} ({len(chosen)})")
        for row in chosen:
            click.echo(
                f"  {row['alertname']:<34} {row['severity']:<8} {row['instance']:<22} "
                f"since {row['since'][:19]}  {row['value']}"
            )
            for ack in row["acknowledgements"]:
                click.echo(
                    f"      acked by {ack['created_by']} until {ack['ends_at'][:19]}: "
                    f"{ack['comment']} (silence {ack['id']})"
                )


@alerts.command("list")
@_alertmanager_option
@click.option("--json", "as_json", is_flag=True, help="One JSON document instead of a table.")
def list_command(alertmanager_url: str, as_json: bool) -> None:
    """Alerts Alertmanager holds: active, acknowledged (silenced) and inhibited."""
    client = Client(alertmanager_url)
    held = _call(client.alerts)
    silences = {s.id: s for s in _call(client.silences)}
    rows = [_row(alert, silences) for alert in sorted(held, key=lambda a: a.name)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        _print_rows(rows)


def _matchers(name: str, pairs: Sequence[str]) -> dict[str, str]:
    matchers = {"alertname": name}
    for pair in pairs:
        label, sep, value = pair.partition("=")
        if not sep or not label.strip():
            raise click.BadParameter(f"must be label=value, got {pair!r}", param_hint="--matcher")
        matchers[label.strip()] = value.strip()
    return matchers


def _duration(_ctx: click.Context, _param: click.Parameter, text: str) -> timedelta:
    try:
        seconds = duration_seconds(text)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    if seconds <= 0:
        raise click.BadParameter(f"must be longer than 0, got {text!r}")
    return timedelta(seconds=seconds)


@alerts.command("ack")
@click.argument("name")
@click.option("--matcher", "pairs", multiple=True, help="Also match label=value (repeatable).")
@click.option("--duration", callback=_duration, default="2h", show_default=True)
@click.option("--comment", required=True, help="Why; shown to everyone who lists the alert.")
@click.option("--author", default=getpass.getuser, show_default="you", help="Who acknowledged.")
@_alertmanager_option
def ack_command(
    name: str,
    pairs: tuple[str, ...],
    duration: timedelta,
    comment: str,
    author: str,
    alertmanager_url: str,
) -> None:
    """Acknowledge alert NAME: silence it (no emails, repeats included) for --duration."""
    matchers = _matchers(name, pairs)
    client = Client(alertmanager_url)
    now = datetime.now(UTC)
    silence_id = _call(lambda: client.silence(matchers, now, now + duration, author, comment))
    held = _call(client.alerts)
    if not any(matchers.items() <= alert.labels.items() for alert in held):
        click.echo(
            "warning: no alert matches now; the acknowledgement holds if one fires", err=True
        )
    shown = ", ".join(f"{k}={v}" for k, v in matchers.items())
    until = (now + duration).strftime("%Y-%m-%d %H:%M:%S UTC")
    click.echo(f"acknowledged {shown} until {until}: silence {silence_id}")


@alerts.command("unack")
@click.argument("silence_id")
@_alertmanager_option
def unack_command(silence_id: str, alertmanager_url: str) -> None:
    """Expire the acknowledgement (silence) SILENCE_ID: notifications resume."""
    client = Client(alertmanager_url)
    _call(lambda: client.expire(silence_id))
    click.echo(f"expired silence {silence_id}")


@alerts.command("render-config")
@click.option(
    "--output",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="Directory for alertmanager.yml and wsmon.tmpl.",
)
def render_config_command(output: Path) -> None:
    """Write an Alertmanager config with SMTP settings from WSMON_SMTP_* variables.

    \b
      WSMON_SMTP_SMARTHOST      host:port of the mail relay (required)
      WSMON_SMTP_FROM           sender address (required)
      WSMON_SMTP_TO             recipient of every alert, or per severity:
      WSMON_SMTP_WARNING_TO / WSMON_SMTP_CRITICAL_TO
      WSMON_SMTP_USERNAME       login, if the relay needs one; then also
      WSMON_SMTP_PASSWORD_FILE  a file holding the password, read by Alertmanager
      WSMON_SMTP_REQUIRE_TLS    true (default) or false

    Alertmanager 0.25 does not expand variables in its config, so they are resolved here; the
    password itself never enters the file.
    """
    _require_build("wsmon alerts render-config")
    from . import build

    try:
        settings = smtp.from_environment(os.environ)
        files = build.render(load(DEFAULT_THRESHOLDS), {"smtp": settings})
    except (smtp.SmtpSettingsError, ThresholdsError) as exc:
        raise click.ClickException(str(exc)) from None
    wanted = {name: text for name, text in files.items() if name not in build.PROMETHEUS_FILES}
    build.write(wanted, output)
    click.echo(f"wrote {', '.join(sorted(wanted))} to {output}")


# `wsmon alerts email ...` (email_cli.py) builds on the helpers above, so it joins last.
from . import email_cli  # noqa: E402

__all__ = ["alerts", "build_options", "email_cli", "rules", "run_build", "thresholds_option"]
