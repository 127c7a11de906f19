"""`wsmon dashboards build`: thresholds.yaml and the Jsonnet -> dashboards/generated/*.json."""

from __future__ import annotations

from pathlib import Path
from typing import Final

import click

from wsmon.alerting.cli import build_options, run_build, url_option

from . import build

DEFAULT_OUTPUT: Final = Path("dashboards/generated")


@click.group()
def dashboards() -> None:
    """Build the Grafana dashboards (one per tab of the monitoring guide)."""


@dashboards.command("build")
@build_options(DEFAULT_OUTPUT, "Directory for the dashboards' JSON, one <uid>.json each.")
@url_option(
    "--runbook-url",
    "Where the runbooks are, as given to `wsmon rules build`. [default: each server's own"
    " page, http://INSTANCE/runbooks]",
)
@url_option(
    "--dashboard-url", "Grafana's address, for its silences page. [default: http://localhost:3000]"
)
@url_option(
    "--alertmanager-url",
    "Alertmanager's address, for its alerts and silences pages. [default: http://localhost:9093]",
)
def build_command(
    thresholds_file: Path,
    output: Path,
    check: bool,
    runbook_url: str | None,
    dashboard_url: str | None,
    alertmanager_url: str | None,
) -> None:
    """Generate the dashboards' Grafana JSON (Classic model, Grafana 9 to 13).

    Build them from the same thresholds file as the rules (`wsmon rules build`), so a threshold
    line on a panel is the value its alert fires at.

    \b
      wsmon dashboards build
      wsmon dashboards build --thresholds /etc/wsmon/thresholds.yaml \\
          --dashboard-url https://grafana.example.com --output /var/lib/grafana/dashboards/wsmon
    """
    links = {
        "runbookBaseUrl": runbook_url,
        "dashboardBaseUrl": dashboard_url,
        "alertmanagerUrl": alertmanager_url,
    }
    run_build(build.render, thresholds_file, links, output, check, "make dashboards")
