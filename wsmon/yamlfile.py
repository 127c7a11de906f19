"""Reading an operator's YAML file, with errors that say which file, where, and what is wrong."""

from __future__ import annotations

from importlib.resources.abc import Traversable
from typing import Any

import yaml

SHOWN_CHARACTERS = 80


def shown(value: Any) -> str:
    """A value as an error message quotes it: its repr, cut short. A YAML alias bomb of a few
    hundred bytes expands to megabytes, and a message must not."""
    text = repr(value)
    return text if len(text) <= SHOWN_CHARACTERS else text[: SHOWN_CHARACTERS - 1] + "…"


class YamlFileError(ValueError):
    """The file cannot be read or is not YAML; the message names the file (and line, column)."""


def _unreadable(exc: OSError) -> str:
    """Why the file cannot be read, in the operator's terms rather than the C library's."""
    if isinstance(exc, FileNotFoundError):
        return "there is no such file"
    if isinstance(exc, IsADirectoryError):
        return "it is a directory, not a file"
    if isinstance(exc, PermissionError):
        return "this user may not read it (check its owner and mode)"
    return f"the system refused to read it ({exc.strerror or type(exc).__name__})"


def read_yaml(path: Traversable, what: str) -> Any:
    """The parsed document (None for an empty file); `what` names the file in errors.

    `path` is a file path or packaged data (importlib.resources)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise YamlFileError(f"{path}: cannot read {what}: {_unreadable(exc)}") from None
    except UnicodeDecodeError as exc:
        raise YamlFileError(
            f"{path}: cannot read {what}: byte {exc.start} is not UTF-8 (is it a text file?)"
        ) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise YamlFileError(f"{path}: not valid YAML{where}: {exc}") from None
    except RecursionError:
        raise YamlFileError(f"{path}: not valid YAML: nested too deeply") from None
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
        # PyYAML's constructors raise these for a scalar its tag or form promises and does not
        # hold (`!!int abc`, the date 2001-13-01, `!!bool maybe`): the file is still at fault.
        raise YamlFileError(
            f"{path}: not valid YAML: a value cannot be read ({exc!r:.80})"
        ) from None
