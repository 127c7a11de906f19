"""What the deploy tests read from the bundle: its folder, its config, a unit's ExecStart."""

from __future__ import annotations

import configparser
import shlex
from pathlib import Path
from typing import Any

from support.stack import REPO

from wsmon.alerting import build as alerting
from wsmon.thresholds import DEFAULT_THRESHOLDS, load

DEPLOY = REPO / "deploy"


def config() -> dict[str, Any]:
    """The configured mixin's _config, as bundle.jsonnet reads it."""
    return alerting.config(load(DEFAULT_THRESHOLDS))


def unit(path: Path) -> configparser.ConfigParser:
    """A systemd unit as sections of keys (case kept; no interpolation of `$MAINPID`)."""
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    # systemd joins a line ending in a backslash with the next; configparser would not.
    parser.read_string(path.read_text().replace("\\\n", " "))
    return parser


def exec_start(path: Path) -> list[str]:
    """The unit's ExecStart as argv."""
    return shlex.split(unit(path)["Service"]["ExecStart"])
