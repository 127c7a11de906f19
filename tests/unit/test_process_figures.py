"""/proc figures of one process (this one: no process is started here)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from wsmon.exporter import process_metrics

PID_MAX = int(Path("/proc/sys/kernel/pid_max").read_text())


def test_figures_of_this_process() -> None:
    figures = process_metrics.read({"supervisor": os.getpid()})
    assert set(figures) == {
        "wsmon_process_resident_memory_bytes",
        "wsmon_process_open_fds",
        "wsmon_process_cpu_seconds_total",
        "wsmon_process_start_time_seconds",
    }
    (fds,) = figures["wsmon_process_open_fds"]
    assert fds.labels == ("supervisor",)
    # Listing /proc/self/fd opens one more descriptor for the listing itself.
    assert fds.value == len(os.listdir("/proc/self/fd")) - 1
    (start,) = figures["wsmon_process_start_time_seconds"]
    assert time.time() - 3600 < start.value <= time.time() + 1
    assert figures["wsmon_process_resident_memory_bytes"][0].value > 1 << 20


def test_a_process_that_is_gone_has_no_figures() -> None:
    figures = process_metrics.read({"0": PID_MAX + 1, "supervisor": os.getpid()})
    assert {row.labels for rows in figures.values() for row in rows} == {("supervisor",)}
