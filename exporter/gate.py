"""The supervisor's gate before the hand-off: a handshake rate limit per client address, and a
deadline for a new connection's first byte.

Both refuse for the client's own behaviour, so they are counted in
wsmon_handshakes_refused_total{reason}, never in wsmon_connections_rejected_total, which the
connection_rejection_rate alert reads: a flooding or silent client is shown, and pages no one.

- Rate limit: a token bucket per address, `handshake_rate_limit` new connections a second with
  bursts of BURST_SECONDS of them, so a load test's ramp from one address passes. The table
  of addresses is bounded (MAX_ADDRESSES, least recently seen forgotten first), so a scan from many
  addresses costs memory once and no more.
- First byte: a connection is handed to a worker only once it has sent something (or closed),
  so a peer that opens TCP and says nothing is cut at `handshake_timeout_seconds` in the
  supervisor and never holds a worker's slot. Waiting costs one reader registration.

Log lines about refused clients are throttled (logs.Throttled), so a flood cannot fill the disk.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Final

from .logs import Throttled
from .metrics import Cell

log = logging.getLogger(__name__)

BURST_SECONDS: Final = 10.0
MAX_ADDRESSES: Final = 65_536
# Connections waiting for their first byte, at most: past this, new ones are refused as the
# flood they are (counted as handshake_timeout: they would have been cut anyway).
MAX_WAITING: Final = 10_000
RATE_LIMITED: Final = "rate_limited"
HANDSHAKE_TIMEOUT: Final = "handshake_timeout"


class RateLimit:
    """Token buckets per address; `rate` 0 turns the limit off."""

    def __init__(self, rate: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = rate * BURST_SECONDS
        self._clock = clock
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, when

    def allow(self, address: str) -> bool:
        if not self.rate:
            return True
        now = self._clock()
        tokens, then = self._buckets.pop(address, (self.burst, now))
        tokens = min(self.burst, tokens + (now - then) * self.rate)
        allowed = tokens >= 1
        self._buckets[address] = (tokens - 1 if allowed else tokens, now)
        if len(self._buckets) > MAX_ADDRESSES:
            self._buckets.popitem(last=False)
        return allowed


class Gate:
    """Admit accepted connections to `hand_off`, or refuse them, counting why."""

    def __init__(
        self,
        rate: int,
        timeout: float,
        refused: dict[str, Cell],
        hand_off: Callable[[socket.socket], None],
    ) -> None:
        self.limit = RateLimit(rate)
        self.timeout = timeout
        self._refused = refused
        self._hand_off = hand_off
        self._waiting: dict[int, tuple[socket.socket, asyncio.TimerHandle]] = {}
        self._log = Throttled(log)

    def admit(self, conn: socket.socket, address: str) -> None:
        if not self.limit.allow(address):
            self._refuse(conn, RATE_LIMITED, f"{address} opens connections faster than allowed")
            return
        if len(self._waiting) >= MAX_WAITING:
            self._refuse(conn, HANDSHAKE_TIMEOUT, "too many connections wait for a first byte")
            return
        loop = asyncio.get_running_loop()
        fd = conn.fileno()
        timer = loop.call_later(self.timeout, self._expire, fd, address)
        self._waiting[fd] = (conn, timer)
        loop.add_reader(fd, self._ready, fd)

    def close(self) -> None:
        """The pool is draining: connections still silent are closed (they got nothing)."""
        for fd in list(self._waiting):
            conn, _ = self._release(fd)
            conn.close()

    def _release(self, fd: int) -> tuple[socket.socket, asyncio.TimerHandle]:
        conn, timer = self._waiting.pop(fd)
        timer.cancel()
        asyncio.get_running_loop().remove_reader(fd)
        return conn, timer

    def _ready(self, fd: int) -> None:
        # Readable: the request has begun (or the peer closed: the worker sees the EOF and
        # counts nothing, as for any connection that closes before its handshake).
        conn, _ = self._release(fd)
        self._hand_off(conn)

    def _expire(self, fd: int, address: str) -> None:
        if fd in self._waiting:
            conn, _ = self._release(fd)
            self._refuse(
                conn, HANDSHAKE_TIMEOUT, f"{address} sent nothing in {self.timeout:g} s; cut"
            )

    def _refuse(self, conn: socket.socket, reason: str, message: str) -> None:
        conn.close()
        self._refused[reason].value += 1
        self._log.warn(reason, f"refused a connection: {message}")
