"""`wsmon alerts email show | set | test`: who gets the alert mails, and proof that they arrive.

The settings live in the Alertmanager config the mixin renders (alertmanager.libsonnet): one
receiver per severity, wsmon-warning and wsmon-critical, each with one email_config. `show` reads
them back from that file, `set` renders the file again with the changed settings (the same render
as `wsmon alerts render-config`), and `test` posts a synthetic alert to a running Alertmanager so
that its real route, receiver and SMTP relay send a mail. The password is never an argument and
never in a file wsmon writes: Alertmanager reads it from `auth_password_file`.
"""

from __future__ import annotations

import json
import time
import urllib.parse
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import click
import yaml

from wsmon import httpjson
from wsmon.thresholds import ThresholdsError, load

from .cli import DEFAULT_OUTPUT, _alertmanager_option, _call, _duration, _require_build, alerts
from .cli import thresholds_option as _thresholds_option

DEFAULT_CONFIG: Final = DEFAULT_OUTPUT / "alertmanager.yml"
RECEIVERS: Final = {"warning": "wsmon-warning", "critical": "wsmon-critical"}
TEST_ALERT: Final = "WsmonEmailTest"
# Shown by `show`, in this order: mixin field -> label.
_LABELS: Final = {
    "smarthost": "smarthost",
    "from": "from",
    "warningTo": "warning to",
    "criticalTo": "critical to",
    "username": "username",
    "passwordFile": "password file",
    "requireTls": "require TLS",
}


class EmailSettingsError(ValueError):
    """The Alertmanager config has no wsmon email settings, or the new ones are incomplete."""


def read_settings(path: Path) -> dict[str, Any]:
    """The mixin's `smtp` settings that rendered the Alertmanager config at `path`."""
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise EmailSettingsError(
            f"{path}: cannot read the Alertmanager config ({exc.strerror or exc}); `wsmon rules"
            " build` or `wsmon alerts email set` writes one"
        ) from None
    except yaml.YAMLError as exc:
        raise EmailSettingsError(f"{path}: not valid YAML: {exc}") from None
    receivers = document.get("receivers") if isinstance(document, dict) else None
    configs: dict[str, Mapping[str, Any]] = {}
    for receiver in receivers if isinstance(receivers, list) else []:
        if not isinstance(receiver, dict) or receiver.get("name") not in RECEIVERS.values():
            continue
        emails = receiver.get("email_configs")
        if isinstance(emails, list) and emails and isinstance(emails[0], dict):
            configs[receiver["name"]] = emails[0]
    if set(configs) != set(RECEIVERS.values()):
        raise EmailSettingsError(
            f"{path}: not an Alertmanager config wsmon rendered (it needs the receivers"
            f" {' and '.join(RECEIVERS.values())}, each with an email_config)"
        )
    warning, critical = configs[RECEIVERS["warning"]], configs[RECEIVERS["critical"]]
    settings: dict[str, Any] = {
        "smarthost": str(warning.get("smarthost", "")),
        "from": str(warning.get("from", "")),
        "warningTo": str(warning.get("to", "")),
        "criticalTo": str(critical.get("to", "")),
        "username": str(warning.get("auth_username", "")),
        "requireTls": bool(warning.get("require_tls", True)),
    }
    if warning.get("auth_password_file"):
        settings["passwordFile"] = str(warning["auth_password_file"])
    return settings


def problems(settings: Mapping[str, Any]) -> list[str]:
    """What keeps `settings` from making a working email_config, named by the option to fix."""
    found = []
    smarthost = settings.get("smarthost", "")
    if not smarthost:
        found.append("--smarthost: not set")
    elif ":" not in smarthost:
        found.append(f"--smarthost: must be host:port, got {smarthost!r}")
    if not settings.get("from"):
        found.append("--from: not set")
    for field, flag in (("warningTo", "--warning-to"), ("criticalTo", "--critical-to")):
        if not settings.get(field):
            found.append(f"{flag}: not set (nor --to)")
    if settings.get("username") and not settings.get("passwordFile"):
        found.append("--password-file: not set, but --username is (a relay login needs both)")
    return found


def _refuse_password(_ctx: click.Context, _param: click.Parameter, value: str | None) -> None:
    if value is not None:
        raise click.UsageError(
            "--password: a password is never given on the command line (shell history, ps) nor"
            " written to a config; put it in a file only Alertmanager's user can read (chmod 600)"
            " and pass --password-file PATH"
        )


@alerts.group("email")
def email() -> None:
    """Email notification settings of the Alertmanager config, and a real test mail.

    \b
      wsmon alerts email show
      wsmon alerts email set --smarthost smtp.example.com:587 --from wsmon@example.com \\
          --warning-to team@example.com --critical-to oncall@example.com \\
          --username wsmon@example.com --password-file /etc/alertmanager/smtp_password
      wsmon alerts email set --critical-to pager@example.com     # change one setting
      wsmon alerts email test --severity critical --wait

    The password is only ever a file Alertmanager reads (auth_password_file), never an option.
    After `set`, reload Alertmanager (POST /-/reload, or `systemctl reload`) to use the new file.
    """


@email.command("show")
@click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=DEFAULT_CONFIG,
    show_default=True,
    help="The Alertmanager config to read.",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of lines.")
def show_command(config_file: Path, as_json: bool) -> None:
    """The SMTP settings of an Alertmanager config; no secret is shown (there is none in it).

    \b
      wsmon alerts email show
      wsmon alerts email show --config /etc/prometheus/wsmon/alertmanager/alertmanager.yml
    """
    try:
        settings = read_settings(config_file)
    except EmailSettingsError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(settings, indent=2))
        return
    for field, label in _LABELS.items():
        value = settings.get(field, "")
        if field == "requireTls":
            value = "yes" if value else "no"
        if field in ("username", "passwordFile") and not settings.get("username"):
            value = "(none: the relay takes mail without a login)" if field == "username" else "-"
        click.echo(f"{label + ':':<15}{value}")


@email.command("set")
@click.option("--smarthost", metavar="HOST:PORT", help="The SMTP relay Alertmanager sends through.")
@click.option("--from", "sender", metavar="ADDRESS", help="Sender address of every alert mail.")
@click.option("--to", metavar="ADDRESS", help="Recipient of both severities (comma-separated).")
@click.option("--warning-to", metavar="ADDRESS", help="Recipient of warnings (overrides --to).")
@click.option("--critical-to", metavar="ADDRESS", help="Recipient of criticals (overrides --to).")
@click.option("--username", metavar="LOGIN", help="SMTP login; '' for a relay without one.")
@click.option(
    "--password-file",
    metavar="PATH",
    help="File holding the SMTP password, as Alertmanager's host sees it (read when it sends).",
)
@click.option(
    "--require-tls/--no-require-tls", default=None, help="STARTTLS is required (default: yes)."
)
@click.option(
    "--password",
    hidden=True,
    is_flag=False,
    flag_value="",
    expose_value=False,
    callback=_refuse_password,
)
@click.option(
    "--output",
    type=click.Path(path_type=Path, file_okay=False),
    default=DEFAULT_OUTPUT,
    show_default=True,
    help="Directory for alertmanager.yml and wsmon.tmpl; its alertmanager.yml, if any, gives"
    " the settings not changed here.",
)
@_thresholds_option
def set_command(
    smarthost: str | None,
    sender: str | None,
    to: str | None,
    warning_to: str | None,
    critical_to: str | None,
    username: str | None,
    password_file: str | None,
    require_tls: bool | None,
    output: Path,
    thresholds_file: Path,
) -> None:
    """Write the Alertmanager config with these SMTP settings; the rest stay as they are.

    Settings not given are kept from --output's alertmanager.yml (a new one starts empty, so
    --smarthost, --from and the recipients are needed). The file is rendered like `wsmon alerts
    render-config`; no password enters it.

    \b
      wsmon alerts email set --smarthost smtp.example.com:587 --from wsmon@example.com \\
          --to oncall@example.com --username wsmon@example.com \\
          --password-file /etc/alertmanager/smtp_password
      wsmon alerts email set --warning-to team@example.com \
          --output /etc/prometheus/wsmon/alertmanager
      wsmon alerts email set --smarthost localhost:25 --username '' --no-require-tls
    """
    _require_build("wsmon alerts email set")
    from . import build

    current = output / build.ALERTMANAGER
    try:
        settings: dict[str, Any] = read_settings(current) if current.exists() else {}
    except EmailSettingsError as exc:
        raise click.ClickException(str(exc)) from None
    given = {
        "smarthost": smarthost,
        "from": sender,
        "warningTo": warning_to or to,
        "criticalTo": critical_to or to,
        "username": username,
        "passwordFile": password_file,
        "requireTls": require_tls,
    }
    for field, value in given.items():
        if value is not None:
            settings[field] = value.strip() if isinstance(value, str) else value
    settings.setdefault("username", "")
    settings.setdefault("requireTls", True)
    found = problems(settings)
    if found:
        raise click.ClickException("\n".join(found))
    if settings.get("passwordFile") and not Path(settings["passwordFile"]).is_file():
        click.echo(
            f"warning: {settings['passwordFile']} is not a file here; Alertmanager must be able"
            " to read it where it runs",
            err=True,
        )
    try:
        files = build.render(load(thresholds_file), {"smtp": settings})
    except ThresholdsError as exc:
        raise click.ClickException(str(exc)) from None
    wanted = {name: text for name, text in files.items() if name not in build.PROMETHEUS_FILES}
    changed = build.stale(wanted, output)
    build.write(wanted, output)
    what = "changed" if changed else "unchanged"
    click.echo(f"wrote {', '.join(sorted(wanted))} to {output} ({what})")
    if changed:
        click.echo("reload Alertmanager to use it: POST /-/reload, or `systemctl reload`")


def _test_alert(severity: str, instance: str, ends: datetime) -> dict[str, Any]:
    return {
        "labels": {
            "alertname": TEST_ALERT,
            "severity": severity,
            "service": "wsmon",
            "instance": instance,
        },
        "annotations": {
            "summary": "Test notification from `wsmon alerts email test`: no action needed",
            "description": (
                "Sent to check that alert mail reaches its recipients: Alertmanager routed this"
                f" synthetic {severity} alert to its wsmon-{severity} receiver."
            ),
            "value": "-",
            "threshold": "-",
        },
        "startsAt": datetime.now(UTC).isoformat(),
        "endsAt": ends.isoformat(),
    }


@email.command("test")
@click.option(
    "--severity",
    type=click.Choice(tuple(RECEIVERS)),
    default="warning",
    show_default=True,
    help="Which receiver (recipients) the test alert is routed to.",
)
@click.option(
    "--lasts",
    "lasts",
    callback=_duration,
    default="5m",
    show_default=True,
    help="When the test alert ends by itself (its endsAt); a resolved mail may follow.",
)
@click.option(
    "--wait",
    is_flag=True,
    help="Then poll Alertmanager until it holds the alert as active (at most 30 s).",
)
@_alertmanager_option
def test_command(severity: str, lasts: timedelta, wait: bool, alertmanager_url: str) -> None:
    """Send a test mail through the real Alertmanager: post a synthetic alert to its v2 API.

    The alert, WsmonEmailTest, takes the route a real alert of --severity takes, so the mail goes
    to that receiver's recipients through the configured relay. It arrives after the route's
    group_wait (30 s in the generated config). Each test has its own instance label, so each
    sends a mail of its own. Exit 0 when Alertmanager accepted it, 1 when it refused, 2 when it
    did not answer.

    \b
      wsmon alerts email test
      wsmon alerts email test --severity critical --wait \\
          --alertmanager http://alertmanager.internal:9093
    """
    api = httpjson.Api(
        alertmanager_url.rstrip("/"), "Alertmanager", "Alertmanager's v2 API", "/api/v2"
    )
    instance = f"email-test-{uuid.uuid4().hex[:8]}"
    alert = _test_alert(severity, instance, datetime.now(UTC) + lasts)
    _call(lambda: api.request("POST", "/alerts", [alert]))
    click.echo(
        f"Alertmanager at {alertmanager_url} accepted {TEST_ALERT} (severity={severity},"
        f" instance={instance}); the wsmon-{severity} receiver mails it after group_wait"
    )
    if not wait:
        return
    matchers = (f'alertname="{TEST_ALERT}"', f'instance="{instance}"')
    query = "/alerts?" + urllib.parse.urlencode([("filter", m) for m in matchers])
    deadline = time.monotonic() + 30
    while True:
        held = _call(lambda: api.call("GET", query, httpjson.json_list))
        states = [httpjson.json_object(a.get("status", {})).get("state") for a in held]
        if "active" in states:
            click.echo(f"Alertmanager holds {TEST_ALERT} as active: the notification is queued")
            return
        if time.monotonic() > deadline:
            shown = ", ".join(map(str, states)) or "not held"
            raise click.ClickException(
                f"Alertmanager accepted {TEST_ALERT} but does not hold it as active after 30 s"
                f" ({shown}); is it silenced or inhibited?"
            )
        time.sleep(0.5)
