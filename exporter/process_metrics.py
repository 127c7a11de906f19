"""Each pool process's resident memory, open descriptors, CPU seconds and start time.

Memory and descriptors are what run out at 10,000 connections, and they belong to the workers, so
the supervisor reads every live process's /proc entry at scrape time and labels the figures with
the worker index ("supervisor" for itself). A dead worker's figures disappear with it: unlike its
counters nothing of them is retired (a new process starts its CPU counter afresh, a reset).

Not prometheus_client's ProcessCollector: it counts descriptors by listing /proc/PID/fd, which
took 5 ms per worker holding 5,000 connections, and made a scrape of a pool of two at 10,000
connections take 15 ms instead of 2.4 (p50 of 50 scrapes of a live `wsmon serve --workers 2`,
measured once when this was written; `make bench ARGS="--only broadcast"` measures the scrape).
Since Linux 6.2 the size of /proc/PID/fd is the count itself; older kernels report 0 there and get
the listing. The other figures are the same
fields of /proc/PID/stat that ProcessCollector reads (proc(5)).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Final

from .metrics import Sample, Snapshot

SUPERVISOR: Final = "supervisor"
_TICKS: Final = os.sysconf("SC_CLK_TCK")
_PAGE: Final = os.sysconf("SC_PAGE_SIZE")


@cache
def _boot_time() -> float:
    """Seconds since the epoch at boot: /proc/PID/stat counts a start time from it."""
    for line in Path("/proc/stat").read_bytes().splitlines():
        if line.startswith(b"btime "):
            return float(line.split()[1])
    raise OSError("no btime in /proc/stat")


def _figures(pid: int) -> dict[str, float] | None:
    """One process's figures by metric name; None once it has exited."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
        fds = os.stat(f"/proc/{pid}/fd").st_size or len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None
    # After the command name (which may itself hold spaces and ')'), field 3 onwards.
    fields = stat.rsplit(b")", 1)[1].split()
    utime, stime, start, rss = fields[11], fields[12], fields[19], fields[21]
    return {
        "wsmon_process_resident_memory_bytes": float(int(rss) * _PAGE),
        "wsmon_process_open_fds": float(fds),
        "wsmon_process_cpu_seconds_total": (int(utime) + int(stime)) / _TICKS,
        "wsmon_process_start_time_seconds": _boot_time() + int(start) / _TICKS,
    }


def read(pids: Mapping[str, int]) -> Snapshot:
    """The figures of every process in `pids` (worker label -> pid) that is still running."""
    out: Snapshot = {}
    for worker, pid in pids.items():
        for name, value in (_figures(pid) or {}).items():
            out.setdefault(name, []).append(Sample((worker,), value))
    return out
