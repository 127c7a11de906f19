"""`wsmon deploy build`: the alerting mixin's config and bundle.jsonnet -> deploy/."""

from __future__ import annotations

from pathlib import Path
from typing import Final

import click

from wsmon.alerting.cli import build_options, run_build

from . import build

DEFAULT_OUTPUT: Final = Path("deploy")


@click.group()
def deploy() -> None:
    """Build the deploy bundle: Prometheus, Alertmanager, Grafana, systemd, Compose, Kubernetes."""


@deploy.command("build")
@build_options(DEFAULT_OUTPUT, "Directory of the bundle (prometheus/, systemd/, kubernetes/...).")
def build_command(thresholds_file: Path, output: Path, check: bool) -> None:
    """Generate the deploy bundle, with copies of the rules, Alertmanager config and dashboards.

    Build it from the same thresholds file as `wsmon rules build` and `wsmon dashboards build`,
    so the copies are the files those write. Ports, install paths and the 30-day retention are
    the `deploy` section of alerting/config.libsonnet.

    \b
      wsmon deploy build
      wsmon deploy build --check
    """
    # The server's copy of the thresholds is the file itself, comments and all.
    text = thresholds_file.read_text()
    run_build(
        lambda t, o: build.render(t, o, text), thresholds_file, {}, output, check, "make deploy"
    )
