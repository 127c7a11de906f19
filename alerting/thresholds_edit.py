"""Edit an admin's thresholds.yaml in place: its comments, order and quoting survive every edit.

Each edit is a function from the file's text to the would-be text, checked by the loader
(wsmon.thresholds.parse) before anything is written; `write` then renames the new text into
place, so a refused edit, or a crash half-way, leaves the file as it was. Changing fields goes
through ruamel.yaml's round trip, which keeps every comment where it was. Adding and removing a
whole entry work on the lines ruamel.yaml reports for each entry: an entry's own comment is the
comment block directly above it (no blank line between), and goes with it when it is removed.
"""

from __future__ import annotations

import difflib
import io
import math
import os
import tempfile
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, Final

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError as RuamelError
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

from wsmon.thresholds import FIELDS, Threshold, ThresholdsError, parse

# What `set` may change; the name is the entry's identity (remove and add to rename).
CHANGEABLE: Final = tuple(field for field in FIELDS if field != "name")


class EditError(ValueError):
    """The edit cannot be made (no such entry, a duplicate name, a file ruamel cannot edit)."""


def _yaml(sequence: int = 2, offset: int = 0) -> YAML:
    editor = YAML()  # round trip: comments, key order and quotes are kept
    editor.preserve_quotes = True
    editor.indent(mapping=2, sequence=sequence, offset=offset)
    editor.width = 4096  # never fold a long line the admin wrote on one
    return editor


def _load(text: str, source: str) -> Any:
    try:
        return _yaml().load(text)
    except RuamelError as exc:
        raise ThresholdsError(f"{source}: not valid YAML: {exc}") from None


def check(text: str, source: str) -> tuple[Threshold, ...]:
    """What the server and the rules build would make of `text`: the loader's own checks and
    messages (it reads with PyYAML, so this is also what PyYAML makes of ruamel's output)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ThresholdsError(f"{source}: not valid YAML: {exc}") from None
    return parse(data, source)


def names(text: str, source: str) -> list[str]:
    data = _load(text, source)
    if not isinstance(data, list):
        return []
    return [str(entry.get("name")) for entry in data if isinstance(entry, Mapping)]


def unknown_name(name: str, known: list[str], source: str) -> EditError:
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
    hint = f"did you mean {', '.join(close)}?" if close else f"names: {', '.join(known)}"
    return EditError(f"{source}: no threshold named {name!r}; {hint}")


def _index(data: Any, name: str, source: str) -> int:
    if not isinstance(data, list):
        raise ThresholdsError(f"{source}: must be a list of thresholds, got {type(data).__name__}")
    known = [str(e.get("name")) for e in data if isinstance(e, Mapping)]
    for index, entry in enumerate(data):
        if isinstance(entry, Mapping) and entry.get("name") == name:
            return index
    raise unknown_name(name, known, source)


def scalar(field: str, value: Any) -> Any:
    """`value` as it should be written: conditions double-quoted like the file's (`>` alone is
    not a plain YAML scalar), numbers in positional notation (PyYAML, the loader, reads `1e-05`
    as a string), everything else as given (the loader says what is wrong with it)."""
    if field == "condition" and isinstance(value, str):
        return DoubleQuotedScalarString(value)
    if field == "value" and isinstance(value, float) and math.isfinite(value):
        text = str(int(value)) if value.is_integer() else format(Decimal(repr(value)), "f")
        return _yaml().load(f"v: {text}\n")["v"]  # ruamel's own scalar: written as read
    return value


def number(text: str) -> float | str:
    """A --value as given on the command line: a number, or the text for the loader to refuse."""
    try:
        value = float(text)
    except ValueError:
        return text
    return value if math.isfinite(value) else text


def update(text: str, source: str, name: str, changes: Mapping[str, Any]) -> str:
    """`text` with the fields of entry `name` set to `changes` (a field it lacks is added)."""
    data = _load(text, source)
    entry = data[_index(data, name, source)]
    for field, value in changes.items():
        entry[field] = scalar(field, value)
    out = io.StringIO()
    _yaml(*_indentation(text, data)).dump(data, out)
    return out.getvalue()


def _indentation(text: str, data: Any) -> tuple[int, int]:
    """(sequence, offset) of ruamel's indent() that reproduce the file's entries: where the
    dash of an entry is and where its keys start."""
    if not isinstance(data, list) or not data or not hasattr(data, "lc"):
        return 2, 0
    line, column = data.lc.item(0)
    dash = text.splitlines()[line].find("-")
    return (column, dash) if 0 <= dash < column else (2, 0)


def add(text: str, source: str, entry: Mapping[str, Any]) -> str:
    """`text` with `entry` appended, after a blank line, as the last entry."""
    data = _load(text, source)
    name = entry.get("name")
    if isinstance(data, list) and any(
        isinstance(e, Mapping) and e.get("name") == name for e in data
    ):
        raise EditError(
            f"{source}: a threshold named {name!r} exists already; change it with"
            f" `wsmon thresholds set {name}`, or pick another name"
        )
    sequence, offset = _indentation(text, data)
    out = io.StringIO()
    _yaml(sequence, offset).dump([{k: scalar(k, v) for k, v in entry.items()}], out)
    if isinstance(data, list) and data:
        return text.rstrip("\n") + "\n\n" + out.getvalue()
    # No entries yet (an empty file, or `[]`): keep the comment lines, then the first entry.
    comments = [line for line in text.splitlines(keepends=True) if line.lstrip().startswith("#")]
    head = "".join(comments)
    return (head.rstrip("\n") + "\n\n" if head else "") + out.getvalue()


def _comment_or_blank(line: str) -> bool:
    return not line.strip() or line.lstrip().startswith("#")


def remove(text: str, source: str, name: str) -> str:
    """`text` without entry `name`, its own comment and one blank line beside it."""
    data = _load(text, source)
    index = _index(data, name, source)
    lines = text.splitlines(keepends=True)
    start = data.lc.item(index)[0]
    # Its own comment: the comment lines right above it, unless they run up to the top of the
    # file (then they are the file's header).
    above = start
    while above > 0 and lines[above - 1].lstrip().startswith("#"):
        above -= 1
    if above > 0:
        start = above
    # Its end: the next entry's line, less the blank lines and comments that lead up to it; for
    # the last entry, the end of the file less any closing comments.
    end = data.lc.item(index + 1)[0] if index + 1 < len(data) else len(lines)
    while end > start + 1 and _comment_or_blank(lines[end - 1]):
        end -= 1
    if start > 0 and not lines[start - 1].strip():
        start -= 1
    elif end < len(lines) and not lines[end].strip():
        end += 1
    return "".join(lines[:start] + lines[end:])


def write(path: Path, text: str) -> None:
    """Replace `path` by `text` atomically (a temporary file in its folder, renamed over it),
    keeping the file's mode."""
    mode = path.stat().st_mode & 0o7777 if path.exists() else None
    descriptor, partial = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as out:
            out.write(text)
        if mode is not None:
            os.chmod(partial, mode)
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
