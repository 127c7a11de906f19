"""One load test from start to report: probe the targets, run the plan, measure our own CPU.

The only module that owns an event loop (uvloop where installed, as the server does).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence

from wsmon.loop import run as run_loop

from .client import Run, RunPlan, RunTimes, TargetUnreachable, probe
from .cpu import CpuMeter, CpuUsage
from .report import Report, build, progress_line
from .stats import Recorder, TimelinePoint
from .thresholds import Threshold


class _Progress:
    """Writes the live progress line to stderr: rewritten in place on a terminal, one line every
    `every` seconds in a log.
    """

    def __init__(self, recorder: Recorder, target: int, every: int) -> None:
        self.recorder = recorder
        self.target = target
        self.every = every
        self.tty = sys.stderr.isatty()
        self.meter = CpuMeter()

    def __call__(self, point: TimelinePoint) -> None:
        if point.t != int(point.t):  # the last, partial second: the summary follows
            if self.tty:
                sys.stderr.write("\n")
            return
        # The first second too, so that a log shows at once that the run is under way.
        if int(point.t) % self.every and point.t != 1:
            return
        cpu = self.meter.read().percent_of_core
        self.meter.restart()
        line = progress_line(point, self.recorder, self.target, cpu)
        sys.stderr.write("\r\x1b[K" + line if self.tty else line + "\n")
        sys.stderr.flush()


def execute(
    plan: RunPlan,
    thresholds: Sequence[Threshold],
    *,
    started_at: str,
    progress_every: int | None,
) -> Report:
    """Run the plan and build its report; TargetUnreachable when a target does not answer."""
    recorder = Recorder()
    outcome: list[tuple[RunTimes, CpuUsage]] = []

    async def main() -> None:
        answers = await asyncio.gather(
            *(probe(url, plan.connect_timeout, plan.token) for url in plan.urls)
        )
        problems = [answer for answer in answers if answer is not None]
        if problems:
            raise TargetUnreachable("\n".join(problems))
        on_tick = (
            None
            if progress_every is None
            else _Progress(recorder, plan.profile.connections, progress_every)
        )
        meter = CpuMeter()
        times = await Run(plan, recorder, on_tick).execute()
        outcome.append((times, meter.read()))

    run_loop(main())
    times, cpu = outcome[0]
    return build(plan, recorder, times, cpu, thresholds, started_at=started_at)
