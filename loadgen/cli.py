"""`wsmon loadtest PROFILE`: run a profile against one or more servers and judge the result.

Exit status: 0 every threshold holds, 1 a threshold failed, 2 a usage error or a target that
cannot be reached (or a local server that cannot be started), 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import contextlib
import ipaddress
import secrets
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import click

from wsmon.limits import SPARE, raise_open_file_limit

from .profiles import DEFAULT_MIX, PROFILE_NAMES, PROFILES, ProfileError, parse_mix, resolve_profile
from .thresholds import (
    DEFAULT_THRESHOLDS,
    DELIVERY_THRESHOLDS,
    EXAMPLES,
    Threshold,
    ThresholdError,
    defaults_for,
    latency_budget_ms,
    merge,
    parse_threshold,
)

DEFAULT_URL: Final = "ws://127.0.0.1:8080/ws"
EXIT_PASSED, EXIT_FAILED, EXIT_SETUP, EXIT_INTERRUPTED = 0, 1, 2, 130
# Progress every second on a terminal (one rewritten line), every few seconds in a CI log.
LOG_PROGRESS_EVERY: Final = 5


class SetupError(click.ClickException):
    """The run could not start: nothing answers at a target, or a local server failed."""

    exit_code = EXIT_SETUP


def default_grace(thresholds: list[Threshold]) -> float:
    """Twice the tightest latency bound, between 1 and 5 s: a reply later than that has failed
    its threshold anyway, and waiting longer only delays CI.
    """
    budget = latency_budget_ms(thresholds)
    return 5.0 if budget is None else min(max(2 * budget / 1000, 1.0), 5.0)


def _raise_open_file_limit(connections: int) -> None:
    """Each connection is a file descriptor: the soft limit is lifted as far as the hard one
    allows, with a warning when that is still short."""
    short = raise_open_file_limit(connections)
    if short is not None:
        click.echo(
            f"warning: open-file limit {short} is below the {connections + SPARE} this run needs;"
            " expect connect_emfile errors",
            err=True,
        )


def _addresses(values: tuple[str, ...]) -> tuple[str, ...]:
    for value in values:
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise click.BadParameter(f"{value!r} is not an IP address") from None
    return values


def _profiles_help() -> str:
    return "\n".join(
        f"  {p.name:<8} {p.connections:>5} connections, one message every {p.interval:g} s each,"
        f" {p.duration:g} s after a {p.ramp_up:g} s ramp-up"
        for p in PROFILES.values()
    )


@click.command(
    "loadtest",
    short_help="Load-test a server and judge the result by thresholds.",
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="\b\nProfiles:\n"
    + _profiles_help()
    + "\n  custom   --connections N [--interval S] [--duration S] [--ramp-up S]"
    + "\n\b\nExit status: 0 every threshold holds, 1 a threshold failed,"
    + " 2 usage error or unreachable target.",
)
@click.argument("profile", type=click.Choice(PROFILE_NAMES), metavar="PROFILE")
@click.option("--connections", type=int, help="Connections to open (required for custom).")
@click.option("--interval", type=float, help="Seconds between messages on each connection.")
@click.option("--duration", type=float, help="Seconds of load after the ramp-up.")
@click.option("--ramp-up", type=float, help="Seconds over which connections open, evenly.")
@click.option(
    "--url",
    "urls",
    multiple=True,
    help="Target WebSocket URL; repeat for several instances (connections go round-robin, and"
    " deliveries are verified per sender's instance -> recipient's instance, numbered in --url"
    f" order from 0). [default: {DEFAULT_URL}]",
)
@click.option(
    "--source-address",
    "sources",
    multiple=True,
    callback=lambda _ctx, _param, values: _addresses(values),
    help="A local address to connect from; repeat for several, taken in turn (127.0.0.2,"
    " 127.0.0.3, ... on loopback: one address has about 28,000 ephemeral ports for one server,"
    " and a server's per-address limits count each apart).",
)
@click.option(
    "--mix",
    "mix_text",
    default=DEFAULT_MIX,
    show_default=True,
    help="Message types and weights: echo, ping, chat, publish, notify, broadcast. Every chat,"
    " publish, notify and broadcast is numbered, and its delivery to each of the run's own"
    " connections that must receive it is checked: in time, exactly once.",
)
@click.option(
    "--token-file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    envvar="WSMON_TOKEN_FILE",
    help="File holding the token sent as 'Authorization: Bearer' on every connection (a server"
    " with authentication on; `wsmon auth token` makes one). Never on the command line, where"
    " `ps` shows it. A broadcast mix needs the admin role. [env WSMON_TOKEN_FILE]",
)
@click.option("--seed", type=int, help="Seed for phases and the mix, to repeat a run. [random]")
@click.option(
    "--threshold",
    "threshold_texts",
    multiple=True,
    metavar="EXPR",
    help="Pass/fail rule, repeatable; replaces the default on the same metric"
    f" ({EXAMPLES}). Defaults: "
    + ", ".join(str(t) for t in DEFAULT_THRESHOLDS)
    + "; and, when the mix has chat, publish, notify or broadcast, "
    + ", ".join(str(t) for t in DELIVERY_THRESHOLDS)
    + ".",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the JSON report here. [default: reports/loadtest-PROFILE-TIME.json]",
)
@click.option(
    "--html",
    "html_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the HTML report here. [default: reports/loadtest-PROFILE-TIME.html]",
)
@click.option(
    "--reports-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("reports"),
    show_default=True,
    help="Where default report files go.",
)
@click.option("--no-report", is_flag=True, help="Write no default report files.")
@click.option(
    "--connect-timeout",
    type=click.FloatRange(min=0.1),
    default=5.0,
    show_default=True,
    help="Seconds a handshake (and the welcome frame) may take.",
)
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    help="Seconds to wait for outstanding replies and expected deliveries after the last send;"
    " later ones count as failed (timeout) or missing."
    " [default: 2x the latency threshold, 1-5 s]",
)
@click.option(
    "--start-server",
    is_flag=True,
    help="If nothing listens at a loopback target, start `wsmon serve` there for the run.",
)
@click.option("-q", "--quiet", is_flag=True, help="No live progress line.")
def loadtest(
    profile: str,
    connections: int | None,
    interval: float | None,
    duration: float | None,
    ramp_up: float | None,
    urls: tuple[str, ...],
    sources: tuple[str, ...],
    mix_text: str,
    token_file: Path | None,
    seed: int | None,
    threshold_texts: tuple[str, ...],
    json_path: Path | None,
    html_path: Path | None,
    reports_dir: Path,
    no_report: bool,
    connect_timeout: float,
    grace: float | None,
    start_server: bool,
    quiet: bool,
) -> None:
    """Run a load profile against wsmon and judge it against thresholds.

    Each connection sends on a fixed schedule (open model); latency runs from the scheduled send
    time to the reply. Examples:

    \b
      wsmon loadtest light
      wsmon loadtest heavy --url ws://10.0.0.5:8080/ws --threshold 'p99<150ms'
      wsmon loadtest custom --connections 300 --interval 0.3 --duration 60
      wsmon loadtest medium --url ws://10.0.0.5:8080/ws --url ws://10.0.0.6:8080/ws
      wsmon loadtest custom --connections 50000 --source-address 127.0.0.2 \\
          --source-address 127.0.0.3 --source-address 127.0.0.4
      wsmon loadtest medium --mix echo=1 --json out.json --no-report
    """
    # The run's modules (websockets, hdrhistogram) load only when a load test runs, so that
    # `wsmon serve` does not pay for them at start-up.
    from .client import RunPlan, TargetUnreachable
    from .delivery import verified_types
    from .local_server import LocalServerError, address, serving_where_missing
    from .run import execute

    urls = urls or (DEFAULT_URL,)
    try:
        resolved = resolve_profile(
            profile,
            connections=connections,
            interval=interval,
            duration=duration,
            ramp_up=ramp_up,
        )
        mix = parse_mix(mix_text)
        verified = verified_types(mix.types, token=token_file is not None)
        thresholds = merge(
            defaults_for(verified, resolved.connections),
            [parse_threshold(t) for t in threshold_texts],
        )
        for url in urls:
            address(url)
    except (ProfileError, ThresholdError, ValueError) as exc:
        raise click.UsageError(str(exc)) from None
    plan = RunPlan(
        profile=resolved,
        urls=urls,
        mix=mix,
        seed=secrets.randbelow(2**31) if seed is None else seed,
        token=token_file.read_text().strip() if token_file is not None else None,
        connect_timeout=connect_timeout,
        grace=default_grace(thresholds) if grace is None else grace,
        sources=sources,
    )
    _raise_open_file_limit(resolved.connections)
    started = datetime.now(UTC)
    with contextlib.ExitStack() as stack:
        if start_server:
            try:
                servers = stack.enter_context(serving_where_missing(urls))
            except LocalServerError as exc:
                raise SetupError(str(exc)) from None
            for server in servers:
                click.echo(
                    f"started wsmon serve on {server.host}:{server.port} (pid {server.pid})"
                    " for this run",
                    err=True,
                )
        progress_every = 1 if sys.stderr.isatty() else LOG_PROGRESS_EVERY
        try:
            report = execute(
                plan,
                thresholds,
                started_at=started.isoformat(timespec="seconds"),
                progress_every=None if quiet else progress_every,
            )
        except TargetUnreachable as exc:
            raise SetupError(str(exc)) from None
        except KeyboardInterrupt:
            # Leaving the `with` stops a local server; a partial run gets no verdict.
            click.echo("\ninterrupted: no report", err=True)
            sys.exit(EXIT_INTERRUPTED)
    from .htmlreport import write_html
    from .report import render_text, write_json

    click.echo(render_text(report))
    stamp = started.astimezone().strftime("%Y%m%d-%H%M%S")
    if not no_report:
        json_path = json_path or reports_dir / f"loadtest-{profile}-{stamp}.json"
        html_path = html_path or reports_dir / f"loadtest-{profile}-{stamp}.html"
    written = []
    if json_path is not None:
        write_json(report, json_path)
        written.append(str(json_path))
    if html_path is not None:
        write_html(report, html_path)
        written.append(str(html_path))
    if written:
        click.echo(f"reports: {', '.join(written)}")
    sys.exit(EXIT_PASSED if report.passed else EXIT_FAILED)
