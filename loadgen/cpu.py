"""The load generator's own CPU use, so a report can show that the client was not the bottleneck.

os.times() counts this process only (all its threads), not a local server it started: that is a
child process, whose time is not included until it is waited for, and not read here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from time import perf_counter


@dataclass(frozen=True)
class CpuUsage:
    user_seconds: float
    system_seconds: float
    wall_seconds: float

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

    def read(self) -> CpuUsage:
        now = os.times()
        return CpuUsage(
            user_seconds=now.user - self._times.user,
            system_seconds=now.system - self._times.system,
            wall_seconds=perf_counter() - self._wall,
        )
