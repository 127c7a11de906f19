"""The root `wsmon` command. Its subcommands live with the part they drive and load on demand.

`wsmon serve` (wsmon.exporter), `wsmon loadtest` (wsmon.loadgen), `wsmon rules` and `wsmon alerts`
(wsmon.alerting), `wsmon dashboards` and `wsmon export` (wsmon.dashboards) and `wsmon deploy`
(wsmon.deploy) are named here by import path, not imported: the core depends on none of them,
`wsmon serve` never loads the Jsonnet build, and `wsmon --help` works on an install without the
optional extras (it says which extra a command needs instead).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Final

import click

from . import __version__, extras


@dataclass(frozen=True)
class Subcommand:
    target: str  # "module:attribute" of the click command
    summary: str  # for `wsmon --help`, without importing the command
    extra: str | None  # the pip extra that brings its dependencies, if any


SUBCOMMANDS: Final = {
    "serve": Subcommand(
        "wsmon.exporter.cli:serve",
        "Serve /ws, /ws/echo, /metrics, /runbooks and the health endpoints on one port.",
        None,
    ),
    "auth": Subcommand(
        "wsmon.exporter.auth_cli:auth_group",
        "Issue a client's token (JWT), or list a static token by its digest.",
        None,  # PyJWT, which the server install has
    ),
    "test": Subcommand(
        "wsmon.exporter.selftest_cli:test_group",
        "Test a running server: handshake and ping, the worker pool, echo round trips.",
        None,  # aiohttp's client, which the server install has
    ),
    "loadtest": Subcommand(
        "wsmon.loadgen.cli:loadtest",
        "Load-test a wsmon server and fail when it is unhealthy (exit 1).",
        "loadtest",
    ),
    "rules": Subcommand(
        "wsmon.alerting.cli:rules",
        "Build Prometheus rules, promtool tests and the Alertmanager config from thresholds.yaml.",
        "alerting",
    ),
    "thresholds": Subcommand(
        "wsmon.alerting.thresholds_cli:thresholds",
        "List and edit thresholds.yaml (comments kept), rebuild the rules, --apply them live.",
        "alerting",  # ruamel.yaml, and the Jsonnet build of the rules
    ),
    "alerts": Subcommand(
        "wsmon.alerting.cli:alerts",
        "List, acknowledge and unacknowledge alerts in Alertmanager.",
        None,  # only its render-config needs the alerting extra, and says so
    ),
    "dashboards": Subcommand(
        "wsmon.dashboards.cli:dashboards",
        "Build the Grafana dashboards from the Jsonnet and thresholds.yaml.",
        "alerting",  # the same Jsonnet build as the rules
    ),
    "deploy": Subcommand(
        "wsmon.deploy.cli:deploy",
        "Build the deploy bundle: Prometheus, Alertmanager, Grafana, systemd, Compose, Kubernetes.",
        "alerting",  # the same Jsonnet build as the rules
    ),
    "stack": Subcommand(
        "wsmon.deploy.stack_cli:stack_group",
        "Run the deploy bundle on this machine (wsmon, Prometheus, Alertmanager, a mail sink).",
        "stack",  # the bundle's Jsonnet build and aiosmtpd's mail sink
    ),
    "export": Subcommand(
        "wsmon.dashboards.export:export_command",
        "Export the Historical dashboard's series from Prometheus as CSV or JSON.",
        None,  # the standard library's urllib and click only
    ),
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported when run, or when their own help is asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(SUBCOMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = SUBCOMMANDS.get(cmd_name)
        if entry is None:
            return None
        unavailable = extras.problem(entry.extra, f"wsmon {cmd_name}")
        if unavailable is not None:
            raise click.ClickException(unavailable)
        module_name, attribute = entry.target.split(":")
        module = importlib.import_module(module_name)
        command: click.Command = getattr(module, attribute)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name, entry in SUBCOMMANDS.items():
            needs = f" [needs wsmon[{entry.extra}]]" if entry.extra else ""
            rows.append((name, entry.summary + needs))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="wsmon")
def main() -> None:
    """wsmon: a WebSocket server built to be watched.

    Serve real-time traffic on /ws with Prometheus metrics on /metrics, health on /api/health,
    and everything an operator needs around it. `wsmon COMMAND --help` explains each command.
    """
