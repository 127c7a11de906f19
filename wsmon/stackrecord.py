"""The processes `wsmon stack` started, as it records them in STATE/stack.json.

Written by the stack (wsmon.deploy.stack) and read by whatever acts on a running stack (the
stack's own stop, `wsmon thresholds --stack-dir --apply`), so the format and the check that a pid
is still the process that was started live here, in the core, below both. Each record keeps the
pid with the kernel's start time of that pid: a pid the kernel has given to another program since
is never mistaken for the stack's. Zombies count as gone (an orphan's reaper need not reap them).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

RECORD: Final = "stack.json"
# Where the stack renders Prometheus' config (and the rules beside it), under STATE.
PROMETHEUS_CONFIG: Final = Path("config/prometheus")


class RecordError(ValueError):
    """The record cannot be read; the message names the file."""


def stat_fields(pid: int) -> list[str] | None:
    """/proc/<pid>/stat's fields after the command name (which may hold spaces and ')')."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def start_time(pid: int) -> int | None:
    """When `pid` started, in clock ticks since boot; None when it is gone or a zombie."""
    fields = stat_fields(pid)
    if fields is None or fields[0] == "Z":
        return None
    return int(fields[19])  # field 22 of proc(5); fields[0] is field 3


@dataclass(frozen=True)
class Record:
    """A started process: its name in the stack, its pid (= its process group) and start time."""

    name: str
    pid: int
    started: int

    def alive(self) -> bool:
        return start_time(self.pid) == self.started

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "pid": self.pid, "started": self.started}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Record:
        return cls(str(data["name"]), int(data["pid"]), int(data["started"]))


def read(root: Path) -> list[Record]:
    """The records of the stack in `root`; empty when it has none."""
    path = root / RECORD
    try:
        data = json.loads(path.read_text())
        return [Record.from_json(entry) for entry in data["processes"]]
    except FileNotFoundError:
        return []
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RecordError(f"{path}: unreadable ({exc}); remove it by hand") from None


def write(root: Path, records: list[Record]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    document = {
        "written": datetime.now(UTC).isoformat(timespec="seconds"),
        "processes": [r.to_json() for r in records],
    }
    # Renamed into place: a reader never sees half a record.
    partial = root / (RECORD + ".partial")
    partial.write_text(json.dumps(document, indent=2) + "\n")
    partial.replace(root / RECORD)
