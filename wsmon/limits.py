"""The open-file limit: every connection is a descriptor, and the soft limit processes start with
(1,024 under systemd's defaults) is far below what a server or a load test holds."""

from __future__ import annotations

import resource

# Descriptors a process holds besides its connections: listeners, pipes, the event loop, logs.
SPARE = 256


def raise_open_file_limit(connections: int) -> int | None:
    """Lift the soft RLIMIT_NOFILE to `connections` + SPARE, as far as the hard limit allows;
    child processes inherit it. Returns the limit in force when that is still short, else None."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = connections + SPARE
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return None
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target if target < needed else None
