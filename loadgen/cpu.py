"""The load generator's own CPU and memory, so a report can show that the client was not the
bottleneck, and what a connection costs it.

os.times() counts this process only (all its threads), not a local server it started: that is a
child process, whose time is not included until it is waited for, and not read here. Memory is
this process's resident set: at the start (/proc/self/statm) and at its peak (getrusage).
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter


@dataclass(frozen=True)
class CpuUsage:
    user_seconds: float
    system_seconds: float
    wall_seconds: float
    rss_start_bytes: int = 0
    rss_peak_bytes: int = 0

    @property
    def cpu_seconds(self) -> float:
        return self.user_seconds + self.system_seconds

    @property
    def percent_of_core(self) -> float:
        """CPU time over wall time: 100 % is one core fully busy."""
        return 100 * self.cpu_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0


class CpuMeter:
    """CPU used since the meter was created (or since `restart`)."""

    def __init__(self) -> None:
        self.restart()

    def restart(self) -> None:
        self._times = os.times()
        self._wall = perf_counter()
        self._rss = resident_bytes()

    def read(self) -> CpuUsage:
        now = os.times()
        return CpuUsage(
            user_seconds=now.user - self._times.user,
            system_seconds=now.system - self._times.system,
            wall_seconds=perf_counter() - self._wall,
            rss_start_bytes=self._rss,
            # ru_maxrss is in KiB on Linux; the peak since this process started.
            rss_peak_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        )


def resident_bytes() -> int:
    """This process's resident set now (0 where /proc is not)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    return pages * os.sysconf("SC_PAGE_SIZE")
