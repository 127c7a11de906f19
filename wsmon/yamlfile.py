"""Reading an operator's YAML file, with errors that say which file, where, and what is wrong."""

from __future__ import annotations

from importlib.resources.abc import Traversable
from typing import Any

import yaml


class YamlFileError(ValueError):
    """The file cannot be read or is not YAML; the message names the file (and line, column)."""


def read_yaml(path: Traversable, what: str) -> Any:
    """The parsed document (None for an empty file); `what` names the file in errors.

    `path` is a file path or packaged data (importlib.resources)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise YamlFileError(f"{path}: cannot read {what}: {exc.strerror}") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise YamlFileError(f"{path}: not valid YAML{where}: {exc}") from None
