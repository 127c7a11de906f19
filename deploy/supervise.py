"""Processes that outlive the command that started them, and are stopped by what was recorded.

`make stack` starts the parts and exits; `make stack-stop` runs later, in another process. So each
part runs in its own session (its process group is its pid, and holds the children it forks, like
wsmon's workers), and is recorded (wsmon.stackrecord) by its pid and the kernel's start time of
that pid: a pid the kernel has reused for another program is never signalled.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from wsmon.stackrecord import Record, start_time, stat_fields


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of the process group `pgid`."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = stat_fields(int(entry.name))
        if fields is not None and fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def spawn(
    name: str, argv: Sequence[str], log: Path, env: Mapping[str, str] | None = None
) -> tuple[Record, subprocess.Popen[bytes]]:
    """Start `argv` in a session of its own, its output appended to `log`."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as output:
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )
    started = start_time(process.pid)
    if started is None:  # exited at once: the caller reads why from the log
        started = -1
    return Record(name, process.pid, started), process


def stop(record: Record, timeout: float) -> bool:
    """SIGTERM the record's process group, SIGKILL what is left after `timeout` s.

    False when the record is not (or no longer) the process it names: nothing is signalled.
    """
    if not record.alive():
        # Gone, or its pid is another program's now: its group id may be that program's too.
        return False
    _kill_group(record.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while group_members(record.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    _kill_group(record.pid, signal.SIGKILL)
    while group_members(record.pid) and time.monotonic() < deadline + 5:
        time.sleep(0.05)
    return True


def _kill_group(pgid: int, signum: signal.Signals) -> None:
    # Only while a live member remains: an empty group's id may be reused by anyone.
    if group_members(pgid):
        with contextlib.suppress(ProcessLookupError):  # its last member just exited
            os.killpg(pgid, signum)


def tail(log: Path, lines: int = 15) -> str:
    """The end of a log, to show why a part did not start."""
    try:
        text = log.read_bytes()[-16384:].decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
