"""The supervisor's gate before the hand-off: a handshake rate limit and a connection cap per client
address, and a deadline for a new connection's first byte.

All three refuse for the client's own behaviour, so they are counted in
wsmon_handshakes_refused_total{reason}, never in wsmon_connections_rejected_total, which the
connection_rejection_rate alert reads: a flooding or silent client is shown, and pages no one.

- Rate limit: a token bucket per address, `handshake_rate_limit` new connections a second with
  bursts of BURST_SECONDS of them, so a load test's ramp from one address passes. The table
  of addresses is bounded (MAX_ADDRESSES, least recently seen forgotten first), so a scan from many
  addresses costs memory once and no more.
- Connection cap: `max_connections_per_address` open at once (caps.Tally, counted from accept
  to the worker's report that the connection ended). One over the cap is answered
  `429 Too Many Requests` once its request has arrived (answering before would race the request
  and end in a reset), so the client is told why; meanwhile it is one more waiting connection.
- First byte: a connection is handed to a worker only once it has sent something (or closed),
  so a peer that opens TCP and says nothing is cut at `handshake_timeout_seconds` in the
  supervisor and never holds a worker's slot. Waiting costs one reader registration.

Log lines about refused clients are throttled (logs.Throttled), so a flood cannot fill the disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from .caps import ADDRESS_LIMIT, LOOSE, Tally
from .control import PUBLIC
from .logs import Throttled
from .metrics import Cell

log = logging.getLogger(__name__)

BURST_SECONDS: Final = 10.0
MAX_ADDRESSES: Final = 65_536
# Connections waiting for their first byte, at most: past this the supervisor holds its accepts
# (Handoff._hold), and new connections wait in the kernel's backlog until some have sent their
# request or been cut. Refusing them instead refused 1,800 of a storm of 15,000 clients.
MAX_WAITING: Final = 10_000
CROWDED: Final = f"{MAX_WAITING:,} connections wait for their first byte"
RATE_LIMITED: Final = "rate_limited"
HANDSHAKE_TIMEOUT: Final = "handshake_timeout"
_BODY = b"too many open connections from this address; retry later\n"
# Connection: close, and no more is read: the answer is all this connection gets.
TOO_MANY: Final = (
    b"HTTP/1.1 429 Too Many Requests\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"Retry-After: 5\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(_BODY), _BODY)
)


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


@dataclass(slots=True)
class Waiting:
    """A connection the gate holds until its first byte."""

    conn: socket.socket
    timer: asyncio.TimerHandle
    address: str
    listener: bytes
    claimed: bool  # holds one of its address's connections (caps.Tally)
    over_cap: bool  # to be answered 429 once its request is in


class Gate:
    """Admit accepted connections to `hand_off`, or refuse them, counting why."""

    def __init__(
        self,
        rate: int,
        timeout: float,
        addresses: Tally,
        refused: dict[str, Cell],
        hand_off: Callable[[socket.socket, str, bytes], None],
        accepts: tuple[Callable[[str], None], Callable[[str], None]],
    ) -> None:
        self.limit = RateLimit(rate)
        self._hold, self._let_go = accepts  # stop and start accepting (handoff.py)
        self.timeout = timeout
        self.addresses = addresses
        self._refused = refused
        self._hand_off = hand_off
        self._waiting: dict[int, Waiting] = {}
        self._crowded = False  # accepts held for MAX_WAITING (asked of handoff.py once)
        self._log = Throttled(log)

    def admit(self, conn: socket.socket, address: str, listener: bytes) -> None:
        """A connection accepted on `listener` (control.PUBLIC or OPERATIONS); only the public
        one's count against the address cap: the operations port is the operator's own."""
        if not self.limit.allow(address):
            self._refuse(conn, RATE_LIMITED, f"{address} opens connections faster than allowed")
            return
        if not self._crowded and len(self._waiting) + 1 >= MAX_WAITING:
            self._crowded = True
            self._hold(CROWDED)  # this one still waits; the next ones in the kernel's backlog
        capped = listener == PUBLIC and self.addresses.enabled
        claimed = capped and self.addresses.claim(address, LOOSE)
        loop = asyncio.get_running_loop()
        fd = conn.fileno()
        timer = loop.call_later(self.timeout, self._expire, fd)
        self._waiting[fd] = Waiting(conn, timer, address, listener, claimed, capped and not claimed)
        loop.add_reader(fd, self._ready, fd)

    def close(self) -> None:
        """The pool is draining: connections still silent are closed (they got nothing)."""
        for fd in list(self._waiting):
            self._release(fd).conn.close()

    def _release(self, fd: int) -> Waiting:
        waiting = self._waiting.pop(fd)
        waiting.timer.cancel()
        asyncio.get_running_loop().remove_reader(fd)
        if self._crowded and len(self._waiting) < MAX_WAITING * 9 // 10:
            self._crowded = False
            self._let_go(CROWDED)
        if waiting.claimed:
            self.addresses.release(waiting.address, LOOSE)
        return waiting

    def _ready(self, fd: int) -> None:
        # Readable: the request has begun (or the peer closed: the worker sees the EOF and
        # counts nothing, as for any connection that closes before its handshake).
        waiting = self._waiting[fd]
        if waiting.over_cap:
            self._release(fd)
            self._answer_too_many(waiting)
            return
        # The claim goes with the connection: the worker reports its end (Handoff moves it).
        waiting.claimed = False
        self._release(fd)
        self._hand_off(waiting.conn, waiting.address, waiting.listener)

    def _answer_too_many(self, waiting: Waiting) -> None:
        conn = waiting.conn
        # What has arrived is read first: closing on unread data would reset the connection,
        # and the client would never see the answer.
        with contextlib.suppress(OSError):
            conn.recv(65536)
            conn.send(TOO_MANY)
        cap = self.addresses.cap
        self._refuse(conn, ADDRESS_LIMIT, f"{waiting.address} holds {cap} connections, the cap")

    def _expire(self, fd: int) -> None:
        if fd in self._waiting:
            waiting = self._release(fd)
            self._refuse(
                waiting.conn,
                HANDSHAKE_TIMEOUT,
                f"{waiting.address} sent nothing in {self.timeout:g} s; cut",
            )

    def _refuse(self, conn: socket.socket, reason: str, message: str) -> None:
        conn.close()
        self._refused[reason].value += 1
        self._log.warn(reason, f"refused a connection: {message}")
