"""`wsmon thresholds list | add | set | enable | disable | remove`: no hand-editing of thresholds.

Every edit is checked by the loader on the would-be file before it is written (thresholds_edit.py),
then the rules are rebuilt as `wsmon rules build` builds them, and with --apply made live:
SIGHUP to the server (which re-reads its thresholds), a reload of Prometheus, and of Alertmanager
when its config changed. Each step says whether it worked; the exit status says whether all did.
"""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import click
import yaml

from wsmon import httpjson, stackrecord
from wsmon.thresholds import (
    DEFAULT_THRESHOLDS,
    SEVERITIES,
    Threshold,
    ThresholdsError,
    load,
)

try:
    from . import thresholds_edit as edit
except ImportError as missing:  # ruamel.yaml, of the alerting extra (the Jsonnet is checked first)
    raise click.ClickException(
        f"`wsmon thresholds` needs {missing.name or 'ruamel.yaml'!r}, which comes with the"
        " 'alerting' extra: pip install 'wsmon[alerting]'"
    ) from None
from .cli import DEFAULT_OUTPUT, _require_build, url_option
from .email_cli import EmailSettingsError, read_settings

DEFAULT_FILE: Final = Path("alerting/thresholds.yaml")
COLUMNS: Final = ("name", "metric", "condition", "value", "for", "severity", "enabled")
CONFIRM_SECONDS: Final = 10.0
# Where `wsmon stack` renders the bundle's configs, under its state directory (deploy/stack.py).
STACK_ALERTMANAGER: Final = Path("config/alertmanager")


class ApplyFailed(click.ClickException):
    """The edit was written, but a step of --apply failed: exit 1 after every step reported."""


# -- the file ------------------------------------------------------------------------------------


def _packaged(path: Path) -> bool:
    """True for the copy installed inside site-packages (a checkout's own file is editable)."""
    try:
        packaged = Path(str(DEFAULT_THRESHOLDS)).resolve()
    except OSError:
        return False
    return path.resolve() == packaged and any(
        part in ("site-packages", "dist-packages") for part in packaged.parts
    )


def _thresholds_file(_ctx: click.Context, _param: click.Parameter, value: Path | None) -> Path:
    path = value if value is not None else DEFAULT_FILE
    if value is None and not path.is_file():
        raise click.UsageError(
            f"no {DEFAULT_FILE} here: run in a checkout of wsmon, or name the file the server"
            " reads (its thresholds_file setting) with --file"
        )
    if _packaged(path):
        raise click.UsageError(
            f"{path} is the copy installed with wsmon, which an upgrade replaces: copy it, point"
            " the server's thresholds_file setting at the copy, and edit that with --file"
        )
    return path


def _file_option(command: Callable[..., None]) -> Callable[..., None]:
    return click.option(
        "--file",
        "path",
        type=click.Path(path_type=Path, dir_okay=False, exists=True),
        callback=_thresholds_file,
        help=f"The thresholds file to read or edit.  [default: {DEFAULT_FILE}, here]",
    )(command)


@click.group("thresholds")
def thresholds() -> None:
    """List and edit the alert thresholds (thresholds.yaml), its comments kept.

    Each edit is checked as the server and the rules build check the file, and refused with
    their message (nothing is written) when it would not load. Then the rules are rebuilt into
    --rules-output, and --apply makes them live without a restart.

    \b
      wsmon thresholds list
      wsmon thresholds add WsmonLatencyWatch --metric average_latency --condition '>' \\
          --value 0.05 --for 10m --severity warning
      wsmon thresholds set WsmonPoolUtilizationHigh --value 0.75 --for 10m
      wsmon thresholds disable WsmonP99LatencyHigh
      wsmon thresholds enable WsmonMessageSuccessRateLow
      wsmon thresholds remove WsmonLatencyWatch
      wsmon thresholds set WsmonPoolUtilizationHigh --value 0.7 --apply --stack-dir .stack
    """


def _rows(entries: tuple[Threshold, ...]) -> list[dict[str, Any]]:
    return [
        {
            "name": t.name,
            "metric": t.metric,
            "condition": t.condition,
            "value": t.value,
            "for": t.for_,
            "severity": t.severity,
            "enabled": t.enabled,
        }
        for t in entries
    ]


@thresholds.command("list")
@_file_option
@click.option("--json", "as_json", is_flag=True, help="One JSON list instead of a table.")
def list_command(path: Path, as_json: bool) -> None:
    """The thresholds in the file, in its order: what each alert fires at.

    \b
      wsmon thresholds list
      wsmon thresholds list --file /etc/wsmon/thresholds.yaml --json
    """
    try:
        rows = _rows(load(path))
    except ThresholdsError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    shown = [
        {**row, "value": f"{row['value']:g}", "enabled": "yes" if row["enabled"] else "no"}
        for row in rows
    ]
    widths = {c: max(len(c), *(len(str(r[c])) for r in shown)) for c in COLUMNS}
    click.echo("  ".join(c.upper().ljust(widths[c]) for c in COLUMNS).rstrip())
    for row in shown:
        click.echo("  ".join(str(row[c]).ljust(widths[c]) for c in COLUMNS).rstrip())


# -- after an edit: rebuild, apply ----------------------------------------------------------------


@dataclass
class Targets:
    """What --apply reloads, from the options and a `wsmon stack` state directory."""

    wsmon_pid: int | None = None
    wsmon_url: str | None = None
    prometheus_pid: int | None = None
    prometheus_url: str | None = None
    alertmanager_pid: int | None = None
    alertmanager_url: str | None = None
    started: dict[int, stackrecord.Record] = field(default_factory=dict)  # pid -> its record
    # A stack's other wsmon instances (`wsmon stack start --instances N`): name, pid, URL.
    more_wsmon: list[tuple[str, int, str | None]] = field(default_factory=list)

    def empty(self) -> bool:
        return all(
            value is None
            for value in (
                self.wsmon_pid,
                self.prometheus_pid,
                self.prometheus_url,
                self.alertmanager_pid,
                self.alertmanager_url,
            )
        )


def read_stack(directory: Path, targets: Targets) -> None:
    """The pids a `wsmon stack` recorded in DIR/stack.json, for what the options left open."""
    try:
        records = stackrecord.read(directory)
    except stackrecord.RecordError as exc:
        raise click.UsageError(str(exc)) from None
    if not records:
        raise click.UsageError(
            f"{directory / stackrecord.RECORD}: no such file; is a stack running from {directory}?"
        )
    # The stack's Prometheus scrapes every part: its targets are where to confirm and reload,
    # the wsmon job's in the order of the instances (wsmon, wsmon-2, ...).
    try:
        config = yaml.safe_load(
            (directory / stackrecord.PROMETHEUS_CONFIG / "prometheus.yml").read_text()
        )
        jobs: dict[str, list[str]] = {
            job["job_name"]: list(job["static_configs"][0]["targets"])
            for job in config["scrape_configs"]
        }
    except (OSError, yaml.YAMLError, KeyError, IndexError, TypeError):
        jobs = {}
    wsmon_targets = jobs.get("wsmon", [])
    # An option naming one server names the one to reload: the stack's others are left alone.
    named = targets.wsmon_pid is not None or targets.wsmon_url is not None
    for record in records:
        attribute = f"{record.name}_pid"
        if hasattr(targets, attribute) and getattr(targets, attribute) is None:
            setattr(targets, attribute, record.pid)
            targets.started[record.pid] = record
        elif record.name.startswith("wsmon-") and not named:
            index = int(record.name.removeprefix("wsmon-")) - 1
            url = f"http://{wsmon_targets[index]}" if index < len(wsmon_targets) else None
            targets.more_wsmon.append((record.name, record.pid, url))
            targets.started[record.pid] = record
    for name in ("wsmon", "prometheus", "alertmanager"):
        if jobs.get(name) and getattr(targets, f"{name}_url") is None:
            setattr(targets, f"{name}_url", f"http://{jobs[name][0]}")


def _signal(pid: int, what: str, targets: Targets, check: Callable[[list[str]], bool]) -> None:
    """SIGHUP to `pid` after checking it is `what` (and, from a stack record, the same process)."""
    recorded = targets.started.get(pid)
    if recorded is not None and not recorded.alive():
        raise RuntimeError(f"pid {pid} is no longer the {what} the stack started; is it running?")
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except OSError:
        raise RuntimeError(f"no process {pid}") from None
    if not check(argv):
        raise RuntimeError(f"pid {pid} is not {what} (it runs {' '.join(argv).strip()!r})")
    os.kill(pid, signal.SIGHUP)


def _is_wsmon(argv: list[str]) -> bool:
    return "serve" in argv and any("wsmon" in part for part in argv)


def _named(*names: str) -> Callable[[list[str]], bool]:
    """The program is one of `names` (Debian's and upstream's binaries)."""
    return lambda argv: bool(argv) and Path(argv[0]).name in names


def _reload_url(url: str, service: str) -> None:
    """POST URL/-/reload (synchronous: the answer says whether the new config loaded)."""
    request = urllib.request.Request(f"{url}/-/reload", data=b"", method="POST")
    try:
        with urllib.request.urlopen(request, timeout=15):
            return
    except urllib.error.HTTPError as exc:
        body = exc.read().decode(errors="replace").strip()
        if exc.code == 403 and service == "Prometheus":
            raise RuntimeError(
                f"{url}/-/reload: {body or 'forbidden'}: this Prometheus runs without"
                " --web.enable-lifecycle; give --prometheus-pid to reload it by SIGHUP"
            ) from None
        raise RuntimeError(f"{url}/-/reload: HTTP {exc.code}: {body}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise RuntimeError(f"cannot reach {service} at {url}: {reason}") from None


# Prometheus' own gauges of its config (and rule) loads: the time of the last good one, to the
# nanosecond (runtimeinfo's lastConfigTime is whole seconds: a reload within the second of the
# last load would look like none), and whether the last attempt succeeded.
_RELOADED: Final = "prometheus_config_last_reload_success_timestamp_seconds"
_SUCCESSFUL: Final = "prometheus_config_last_reload_successful"


def _reload_state(url: str) -> tuple[float, bool]:
    """(time of the last successful config load, whether the last attempt succeeded)."""
    try:
        with urllib.request.urlopen(f"{url}/metrics", timeout=5) as response:
            text = response.read().decode(errors="replace")
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise RuntimeError(f"cannot reach Prometheus at {url}: {reason}") from None
    found: dict[str, float] = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in (_RELOADED, _SUCCESSFUL):
            found[name] = float(value)
    if len(found) < 2:
        raise RuntimeError(f"{url}/metrics has no {_RELOADED}: is this Prometheus?")
    return found[_RELOADED], found[_SUCCESSFUL] == 1


def _prometheus_reloaded(url: str, before: tuple[float, bool]) -> None:
    """After a SIGHUP: wait until Prometheus reports a newer successful config load."""
    deadline = time.monotonic() + CONFIRM_SECONDS
    while time.monotonic() < deadline:
        loaded, successful = _reload_state(url)
        if loaded > before[0] and successful:
            return
        if before[1] and not successful:
            raise RuntimeError(
                f"Prometheus at {url} refused the new config or rules (it keeps the old ones);"
                " its log says why"
            )
        time.sleep(0.2)
    raise RuntimeError(
        f"Prometheus at {url} did not report a new config load within {CONFIRM_SECONDS:.0f} s;"
        " its log says why"
    )


def _wsmon_judges(url: str, expected: tuple[Threshold, ...]) -> None:
    """After a SIGHUP: wait until /api/health judges by the new set (a reload that failed keeps
    the old one, and the server's log says why)."""
    api = httpjson.Api(url, "wsmon", "wsmon's /api/health", "")
    wanted = {t.name: (t.condition, t.value, t.severity) for t in expected if t.enabled}
    deadline = time.monotonic() + CONFIRM_SECONDS
    judged: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            document = api.request("GET", "/api/health")
        except httpjson.ApiError as exc:
            raise RuntimeError(str(exc)) from None
        checks = document.get("checks", []) if isinstance(document, dict) else []
        judged = {
            t["alert"]: (t["condition"], t["value"], t["severity"])
            for check in checks
            for t in check.get("thresholds", [])
        }
        metrics = {check.get("name") for check in checks}
        # Every threshold it judges is the file's, and it judges all of the file's enabled ones
        # for the figures it computes (probe failure and instance down are Prometheus' alone).
        complete = all(t.name in judged for t in expected if t.enabled and t.metric in metrics)
        if complete and all(wanted.get(name) == rule for name, rule in judged.items()):
            return
        time.sleep(0.2)
    raise RuntimeError(
        f"{url}/api/health does not judge by the new thresholds after {CONFIRM_SECONDS:.0f} s:"
        " does the server read this file (its thresholds_file setting)? its log says why"
    )


def _step(title: str, action: Callable[[], str]) -> bool:
    try:
        done = action()
    except (RuntimeError, OSError) as exc:
        click.echo(f"  {title}: FAILED: {exc}", err=True)
        return False
    click.echo(f"  {title}: {done}")
    return True


def apply(targets: Targets, entries: tuple[Threshold, ...], alertmanager_changed: bool) -> bool:
    """Make the rebuilt files live; True when every step worked."""
    click.echo("applying:")
    results = []
    servers = [] if targets.wsmon_pid is None else [("wsmon", targets.wsmon_pid, targets.wsmon_url)]
    for name, pid, url in [*servers, *targets.more_wsmon]:

        def wsmon(pid: int = pid, url: str | None = url) -> str:
            _signal(pid, "wsmon serve", targets, _is_wsmon)
            if url is None:
                return f"sent SIGHUP (pid {pid}); its log says whether the file loaded"
            _wsmon_judges(url, entries)
            return f"SIGHUP (pid {pid}); /api/health judges by the new thresholds"

        results.append(_step(name, wsmon))
    if targets.prometheus_pid is not None or targets.prometheus_url is not None:
        results.append(_step("Prometheus", lambda: _reload_prometheus(targets)))
    if targets.alertmanager_pid is not None or targets.alertmanager_url is not None:
        if alertmanager_changed:
            results.append(_step("Alertmanager", lambda: _reload_alertmanager(targets)))
        else:
            click.echo("  Alertmanager: its config did not change; not reloaded")
    return all(results)


def _reload_prometheus(targets: Targets) -> str:
    url, pid = targets.prometheus_url, targets.prometheus_pid
    if pid is None:
        assert url is not None
        _reload_url(url, "Prometheus")
        return f"reloaded ({url}/-/reload)"
    before = None if url is None else _reload_state(url)
    _signal(pid, "Prometheus", targets, _named("prometheus"))
    if url is None or before is None:
        return f"sent SIGHUP (pid {pid}); give --prometheus-url to confirm it loaded"
    _prometheus_reloaded(url, before)
    return f"SIGHUP (pid {pid}); the new rules are loaded"


def _reload_alertmanager(targets: Targets) -> str:
    url, pid = targets.alertmanager_url, targets.alertmanager_pid
    if url is not None:
        _reload_url(url, "Alertmanager")
        return f"reloaded ({url}/-/reload)"
    assert pid is not None
    _signal(pid, "Alertmanager", targets, _named("alertmanager", "prometheus-alertmanager"))
    return f"sent SIGHUP (pid {pid}); its log says whether the config loaded"


@dataclass(frozen=True)
class After:
    """What an editing command does once the file is written (its shared options)."""

    rules_output: Path | None
    alertmanager_output: Path | None
    runbook_url: str | None
    dashboard_url: str | None
    apply: bool
    targets: Targets


@dataclass(frozen=True)
class Rebuilt:
    """The generated files of the edited thresholds, rendered before anything is written."""

    prometheus: dict[str, str]  # rules.yaml, alerts_test.yaml -> --rules-output
    alertmanager: dict[str, str]  # alertmanager.yml, wsmon.tmpl -> --alertmanager-output
    alertmanager_changed: bool


def render(entries: tuple[Threshold, ...], after: After) -> Rebuilt | None:
    """The files `wsmon rules build` would write for `entries`; the Alertmanager config keeps
    the SMTP settings of the one it replaces. None when there is nowhere to write them."""
    if after.rules_output is None:
        return None
    _require_build("wsmon thresholds")
    from . import build

    am_dir = after.alertmanager_output or after.rules_output
    overrides: dict[str, Any] = {
        key: url
        for key, url in (
            ("runbookBaseUrl", after.runbook_url),
            ("dashboardBaseUrl", after.dashboard_url),
        )
        if url is not None
    }
    current = am_dir / build.ALERTMANAGER
    if current.exists():
        try:
            overrides["smtp"] = read_settings(current)
        except EmailSettingsError as exc:
            raise click.ClickException(f"{exc}\nnothing written") from None
    files = build.render(entries, overrides)
    alertmanager = {n: t for n, t in files.items() if n not in build.PROMETHEUS_FILES}
    return Rebuilt(
        prometheus={n: t for n, t in files.items() if n in build.PROMETHEUS_FILES},
        alertmanager=alertmanager,
        alertmanager_changed=bool(build.stale(alertmanager, am_dir)),
    )


def write_rebuilt(rebuilt: Rebuilt | None, after: After) -> None:
    if rebuilt is None or after.rules_output is None:
        click.echo(
            "rules not rebuilt: no --rules-output given and no alerting/generated here;"
            " run `wsmon rules build --thresholds FILE --output DIR`"
        )
        return
    from . import build

    am_dir = after.alertmanager_output or after.rules_output
    build.write(rebuilt.prometheus, after.rules_output)
    build.write(rebuilt.alertmanager, am_dir)
    click.echo(f"wrote {', '.join(sorted(rebuilt.prometheus))} to {after.rules_output}")
    state = "changed" if rebuilt.alertmanager_changed else "unchanged"
    click.echo(f"wrote {', '.join(sorted(rebuilt.alertmanager))} to {am_dir} ({state})")


def _after_options(command: Callable[..., None]) -> Callable[..., None]:
    options = (
        click.option(
            "--rules-output",
            type=click.Path(path_type=Path, file_okay=False),
            help="Where the rebuilt rules.yaml and alerts_test.yaml go: for --apply, the folder"
            " of the rule file the live Prometheus loads.  [default: alerting/generated, when"
            " it exists here]",
        ),
        click.option(
            "--alertmanager-output",
            type=click.Path(path_type=Path, file_okay=False),
            help="Where alertmanager.yml and wsmon.tmpl go, when not beside the rules; the SMTP"
            " settings of the alertmanager.yml there are kept.  [default: --rules-output]",
        ),
        url_option(
            "--runbook-url", "Base of every alert's runbook_url, as in `wsmon rules build`."
        ),
        url_option("--dashboard-url", "Grafana's address, as in `wsmon rules build`."),
        click.option(
            "--apply",
            is_flag=True,
            help="Then make it live: SIGHUP to the server, reload Prometheus, and Alertmanager"
            " when its config changed.",
        ),
        click.option(
            "--stack-dir",
            type=click.Path(path_type=Path, file_okay=False),
            help="A `wsmon stack` state directory: the pids to signal come from its stack.json,"
            " the URLs from its Prometheus config, and the rules go to its config folders.",
        ),
        click.option("--wsmon-pid", type=int, help="The `wsmon serve` supervisor to SIGHUP."),
        click.option(
            "--wsmon-url",
            metavar="URL",
            callback=_url,
            help="That server's address: wait until its /api/health judges by the new set.",
        ),
        click.option(
            "--prometheus-url",
            metavar="URL",
            callback=_url,
            help="POST URL/-/reload (needs --web.enable-lifecycle); with --prometheus-pid, where"
            " to confirm the SIGHUP's reload.",
        ),
        click.option("--prometheus-pid", type=int, help="Reload this Prometheus by SIGHUP."),
        click.option(
            "--alertmanager-url",
            metavar="URL",
            callback=_url,
            help="POST URL/-/reload when its config changed.",
        ),
        click.option(
            "--alertmanager-pid", type=int, help="Reload this Alertmanager by SIGHUP instead."
        ),
    )
    for option in reversed(options):
        command = option(command)
    return command


def _url(_ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return httpjson.check_url(value, "http://127.0.0.1:9090").rstrip("/")
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _after(options: dict[str, Any]) -> After:
    targets = Targets(
        wsmon_pid=options.pop("wsmon_pid"),
        wsmon_url=options.pop("wsmon_url"),
        prometheus_pid=options.pop("prometheus_pid"),
        prometheus_url=options.pop("prometheus_url"),
        alertmanager_pid=options.pop("alertmanager_pid"),
        alertmanager_url=options.pop("alertmanager_url"),
    )
    stack_dir: Path | None = options.pop("stack_dir")
    do_apply: bool = options.pop("apply")
    if stack_dir is not None:
        read_stack(stack_dir, targets)
    if do_apply and targets.empty():
        raise click.UsageError(
            "--apply: nothing to apply to; give --stack-dir, or --wsmon-pid, --prometheus-url"
            " / --prometheus-pid and --alertmanager-url / --alertmanager-pid"
        )
    rules_output: Path | None = options.pop("rules_output")
    alertmanager_output: Path | None = options.pop("alertmanager_output")
    if stack_dir is not None and rules_output is None:
        # The stack's Prometheus and Alertmanager read their configs there.
        rules_output = stack_dir / stackrecord.PROMETHEUS_CONFIG
        alertmanager_output = alertmanager_output or stack_dir / STACK_ALERTMANAGER
    if rules_output is None and DEFAULT_OUTPUT.is_dir():
        rules_output = DEFAULT_OUTPUT
    return After(
        rules_output=rules_output,
        alertmanager_output=alertmanager_output,
        runbook_url=options.pop("runbook_url"),
        dashboard_url=options.pop("dashboard_url"),
        apply=do_apply,
        targets=targets,
    )


def _edit(
    path: Path, change: Callable[[str, str], str], done: str, options: dict[str, Any]
) -> None:
    """Check the edited text with the loader, write it, rebuild, and --apply."""
    after = _after(options)
    source = str(path)
    try:
        text = change(path.read_text(encoding="utf-8"), source)
        entries = edit.check(text, source)
    except (ThresholdsError, edit.EditError) as exc:
        raise click.ClickException(f"{exc}\n{path}: not changed") from None
    rebuilt = render(entries, after)
    edit.write(path, text)
    click.echo(f"{path}: {done}")
    write_rebuilt(rebuilt, after)
    changed = rebuilt is not None and rebuilt.alertmanager_changed
    if after.apply and not apply(after.targets, entries, changed):
        raise ApplyFailed(f"{path} is changed, but not everything applied (see above)")


# -- the editing commands -------------------------------------------------------------------------


_EXAMPLE_FIELDS = "metric, condition, value, for, severity"


@thresholds.command("add")
@click.argument("name")
@click.option(
    "--metric", required=True, help="What it watches: `wsmon thresholds list` shows some."
)
@click.option("--condition", required=True, help="One of >, >=, <, <= (quote it in a shell).")
@click.option(
    "--value", required=True, help="In the metric's base unit: 0.01 is 1 %, 0.1 is 100 ms."
)
@click.option("--for", "for_", required=True, help="How long it must hold: 30s, 5m, 1h.")
@click.option("--severity", required=True, help=f"{' or '.join(SEVERITIES)}.")
@click.option("--disabled", is_flag=True, help="Add it switched off (enabled: false).")
@_file_option
@_after_options
def add_command(
    name: str,
    metric: str,
    condition: str,
    value: str,
    for_: str,
    severity: str,
    disabled: bool,
    path: Path,
    **options: Any,
) -> None:
    """Add threshold NAME (an alert) at the end of the file; a NAME in use is refused.

    \b
      wsmon thresholds add WsmonLatencyWatch --metric average_latency --condition '>' \\
          --value 0.05 --for 10m --severity warning
      wsmon thresholds add WsmonPoolNearlyFull --metric pool_utilization --condition '>=' \\
          --value 0.95 --for 1m --severity critical --apply --stack-dir .stack
    """
    entry = {
        "name": name,
        "metric": metric,
        "condition": condition,
        "value": edit.number(value),
        "for": for_,
        "severity": severity,
        "enabled": not disabled,
    }
    state = "disabled" if disabled else "enabled"
    _edit(path, lambda text, src: edit.add(text, src, entry), f"added {name} ({state})", options)


@thresholds.command("set")
@click.argument("name")
@click.option("--metric", help="What it watches.")
@click.option("--condition", help="One of >, >=, <, <= (quote it in a shell).")
@click.option("--value", help="In the metric's base unit: 0.01 is 1 %, 0.1 is 100 ms.")
@click.option("--for", "for_", help="How long it must hold: 30s, 5m, 1h.")
@click.option("--severity", help=f"{' or '.join(SEVERITIES)}.")
@_file_option
@_after_options
def set_command(
    name: str,
    metric: str | None,
    condition: str | None,
    value: str | None,
    for_: str | None,
    severity: str | None,
    path: Path,
    **options: Any,
) -> None:
    """Change fields of threshold NAME; the others, and every comment, stay as they are.

    \b
      wsmon thresholds set WsmonPoolUtilizationHigh --value 0.75
      wsmon thresholds set WsmonAverageLatencyHigh --value 0.15 --for 10m \\
          --file /etc/wsmon/thresholds.yaml --rules-output /etc/prometheus/wsmon \\
          --alertmanager-output /etc/prometheus/wsmon/alertmanager --apply \\
          --wsmon-pid "$(systemctl show -p MainPID --value wsmon)" \\
          --wsmon-url http://localhost:8080 --prometheus-url http://localhost:9090 \\
          --prometheus-pid "$(systemctl show -p MainPID --value wsmon-prometheus)"

    The bundle's Prometheus has no --web.enable-lifecycle: its pid reloads it (SIGHUP), and
    its URL confirms the new rules loaded.
    """
    given = {"metric": metric, "condition": condition, "for": for_, "severity": severity}
    changes: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    if value is not None:
        changes["value"] = edit.number(value)
    if not changes:
        raise click.UsageError(
            f"nothing to change: give at least one of --{_EXAMPLE_FIELDS.replace(', ', ', --')}"
        )
    shown = ", ".join(f"{k} {v}" for k, v in changes.items())
    _edit(
        path, lambda text, src: edit.update(text, src, name, changes), f"{name}: {shown}", options
    )


def _switch(enabled: bool) -> Callable[..., None]:
    def command(name: str, path: Path, **options: Any) -> None:
        word = "enabled" if enabled else "disabled"
        _edit(
            path,
            lambda text, src: edit.update(text, src, name, {"enabled": enabled}),
            f"{name} {word}",
            options,
        )

    return command


_ENABLE_HELP = """Switch threshold NAME on: its alert fires again, and /api/health judges it.

\b
  wsmon thresholds enable WsmonMessageSuccessRateLow
  wsmon thresholds enable WsmonMessageSuccessRateLow --apply --stack-dir .stack
"""
_DISABLE_HELP = """Switch threshold NAME off (enabled: false): the entry stays, without an alert.

\b
  wsmon thresholds disable WsmonP99LatencyHigh
  wsmon thresholds disable WsmonP99LatencyHigh --apply --wsmon-pid 4242 \\
      --prometheus-url http://localhost:9090 --rules-output /etc/prometheus/wsmon \\
      --alertmanager-output /etc/prometheus/wsmon/alertmanager
"""
for _name, _enabled, _help in (("enable", True, _ENABLE_HELP), ("disable", False, _DISABLE_HELP)):
    thresholds.command(_name, help=_help)(
        click.argument("name")(_file_option(_after_options(_switch(_enabled))))
    )


@thresholds.command("remove")
@click.argument("name")
@_file_option
@_after_options
def remove_command(name: str, path: Path, **options: Any) -> None:
    """Remove threshold NAME, with the comment right above it (`disable` keeps it instead).

    \b
      wsmon thresholds remove WsmonLatencyWatch
      wsmon thresholds remove WsmonLatencyWatch --apply --stack-dir .stack
    """
    _edit(path, lambda text, src: edit.remove(text, src, name), f"removed {name}", options)
