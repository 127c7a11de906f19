"""`wsmon stack start|stop|status` (make stack, make stack-stop): the bundle on this machine."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from wsmon.alerting.cli import thresholds_option
from wsmon.thresholds import ThresholdsError, load

from . import stack

STATE_HELP = "Where the stack keeps its configs, data (Prometheus' 30 days), logs and mails."


def _state_option(command: Callable[..., Any]) -> Callable[..., Any]:
    return click.option(
        "--state-dir",
        type=click.Path(path_type=Path, file_okay=False),
        default=stack.DEFAULT_STATE,
        show_default=True,
        help=STATE_HELP,
    )(command)


def _port_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--wsmon-port, --prometheus-port, ...: one per part of the stack (stack.PORT_KEYS)."""
    for part in reversed(stack.PORT_KEYS):
        if part == "wsmon":
            more = " (wsmon-2 and the next take the ports after it)"
        elif part in stack.BROKER_PARTS:
            more = " (with --instances 2 or more)"
        else:
            more = ""
        if part in stack.STACK_PORTS:
            default = f"{stack.STACK_PORTS[part]}: Debian's package runs its own on 6379"
        else:
            default = "the bundle's deploy.ports"
        command = click.option(
            f"--{part}-port",
            type=click.IntRange(1, 65535),
            help=f"Port of {stack.TITLES[part]}{more}.  [default: {default}]",
        )(command)
    return command


def _fail(error: Exception) -> None:
    raise click.ClickException(str(error)) from None


@click.group()
def stack_group() -> None:
    """Run the deploy bundle on this machine, on 127.0.0.1, without Docker.

    `start` renders deploy/ for loopback into the state directory and starts wsmon serve, Debian's
    prometheus (with the bundle's 30-day retention) and prometheus-alertmanager, an SMTP sink that
    keeps every alert mail as a file, and grafana-server with the provisioning when one is on the
    PATH. It prints every URL, and returns once all of them serve. `stop` ends exactly the
    processes `start` recorded; Prometheus' data stays for the next start.

    `--instances 2` starts two wsmon servers (wsmon on --wsmon-port, wsmon-2 on the next port)
    and Debian's redis-server between them (--redis-port, 6380 by default; no persistence), each
    server with `--broker` to it: a chat sent through one reaches the room's members on the
    other. Prometheus scrapes both under job wsmon, so the dashboards show them side by side.

    \b
      wsmon stack start                       # make stack
      wsmon stack start --instances 2         # make stack ARGS="--instances 2"
      wsmon stack start --wsmon-port 18080 --prometheus-port 19090
      wsmon stack status
      wsmon stack stop                        # make stack-stop
    """


@stack_group.command("start")
@_state_option
@thresholds_option
@click.option(
    "--instances",
    type=click.IntRange(1, stack.MAX_INSTANCES),
    default=1,
    show_default=True,
    help="wsmon servers to start; more than one share deliveries through a local redis-server.",
)
@_port_options
def start_command(
    state_dir: Path, thresholds_file: Path, instances: int, **chosen_ports: int | None
) -> None:
    """Start the stack and print its URLs; refuse when one already runs from STATE_DIR.

    \b
      wsmon stack start --instances 2   # wsmon :8080 and wsmon-2 :8081, Redis :6380 between
    """
    state = stack.State(state_dir)
    try:
        thresholds = load(thresholds_file)
        chosen = {part: chosen_ports[f"{part}_port"] for part in stack.PORT_KEYS}
        ports = stack.configured_ports(thresholds, chosen, instances)
        parts = stack.start(
            state,
            ports,
            thresholds,
            thresholds_file.read_text(),
            lambda line: click.echo(line, err=True),
        )
    except (stack.StackError, ThresholdsError) as exc:
        _fail(exc)
    click.echo(f"The stack is up (state in {state.root}, logs in {state.logs}):")
    for line in stack.describe(parts, state):
        click.echo(line)
    click.echo("Stop it with `make stack-stop` (wsmon stack stop).")


@stack_group.command("stop")
@_state_option
def stop_command(state_dir: Path) -> None:
    """Stop the processes `start` recorded in STATE_DIR; nothing else is signalled."""
    try:
        stopped = stack.stop(stack.State(state_dir), click.echo)
    except stack.StackError as exc:
        _fail(exc)
    if not stopped:
        click.echo(f"no stack is running from {state_dir}")


@stack_group.command("status")
@_state_option
def status_command(state_dir: Path) -> None:
    """Each recorded process and whether it still runs; exit 1 when none does."""
    try:
        records = stack.State(state_dir).read()
    except stack.StackError as exc:
        _fail(exc)
    for record in records:
        title = stack.title(record.name)
        click.echo(f"{title:<13} pid {record.pid:<8} {'running' if record.alive() else 'gone'}")
    if not any(record.alive() for record in records):
        click.echo(f"no stack is running from {state_dir}")
        raise SystemExit(1)
