"""Build the dashboards: validated thresholds -> one <tab>.jsonnet each -> generated/<uid>.json.

The Jsonnet is evaluated by the alerting build's `evaluate` with the alerting mixin's arguments,
its imports resolved among this package's files and then the alerting mixin's (the dashboards
read the same config object as the rules). `write` and `stale` are the alerting build's too.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from importlib.resources import files
from typing import Any, Final

from wsmon.alerting import build as alerting
from wsmon.alerting.build import stale, write
from wsmon.thresholds import Threshold

__all__ = ["PACKAGE", "render", "stale", "write"]

PACKAGE: Final = __name__.rpartition(".")[0]  # wsmon.dashboards


def sources() -> list[str]:
    """The dashboards' entry points: every .jsonnet of the package (the .libsonnet are imports)."""
    return sorted(p.name for p in files(PACKAGE).iterdir() if p.name.endswith(".jsonnet"))


def to_json(dashboard: Any) -> str:
    # Sorted keys and a fixed indent: the same input always writes the same bytes (reviewable
    # diffs, and the stale check compares text).
    return json.dumps(dashboard, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def render(
    thresholds: tuple[Threshold, ...], overrides: Mapping[str, Any] | None = None
) -> dict[str, str]:
    """File name (`<uid>.json`) -> content. `overrides` are deep-merged into the mixin's _config."""
    # Every dashboard in one evaluation, so the mixin's files are read and parsed once rather than
    # once per dashboard (about a third less time than six evaluations, timed side by side with
    # time.perf_counter around render() and the per-file alerting.evaluate calls).
    calls = ", ".join(
        f"{json.dumps(name)}: (import {json.dumps(name)})(catalogue, thresholds, overrides)"
        for name in sources()
    )
    entry = f"function(catalogue, thresholds, overrides={{}}) {{ {calls} }}"
    dashboards = alerting.evaluate(
        "dashboards.jsonnet", (PACKAGE, alerting.PACKAGE), thresholds, overrides, source=entry
    )
    return {f"{d['uid']}.json": to_json(d) for d in dashboards.values()}
