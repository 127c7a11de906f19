"""One log format for the supervisor and its workers: time, process role, level, message."""

from __future__ import annotations

import logging
import sys


def configure_logging(level: str, role: str) -> None:
    logging.basicConfig(
        level=level.upper(),
        stream=sys.stderr,
        format=f"%(asctime)s {role} %(levelname)s %(name)s: %(message)s",
    )
    # aiohttp logs every refused handshake and reset at INFO; our own counters cover those.
    logging.getLogger("aiohttp.server").setLevel(max(logging.WARNING, logging.getLogger().level))
