"""One log format for the supervisor and its workers: time, process role, level, message."""

from __future__ import annotations

import logging
import sys
import time
from typing import Final

# Log lines about refused clients: at most one per reason this often, with how many it stands for.
LOG_INTERVAL: Final = 10.0


def configure_logging(level: str, role: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format=f"%(asctime)s {role} %(levelname)s %(name)s: %(message)s",
    )
    # aiohttp logs every refused handshake and reset at INFO; our own counters cover those.
    logging.getLogger("aiohttp.server").setLevel(max(logging.WARNING, logging.getLogger().level))


class Throttled:
    """A warning per reason at most every LOG_INTERVAL seconds, with how many it stands for."""

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warn(self, reason: str, message: str) -> None:
        now = time.monotonic()
        if now - self._last.get(reason, -LOG_INTERVAL) < LOG_INTERVAL:
            self._suppressed[reason] = self._suppressed.get(reason, 0) + 1
            return
        more = self._suppressed.pop(reason, 0)
        self._last[reason] = now
        self._logger.warning(
            "%s%s", message, f" (and {more} more since the last line)" if more else ""
        )
