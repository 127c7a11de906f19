"""One worker's connections and who they are: users, rooms, topics; and fan-out to them.

Each worker owns its shard of connections. A delivery that starts on one worker is fanned out
here to the local recipients and relayed (through the supervisor) to the other workers, which
fan it out to theirs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from time import perf_counter
from typing import Final

from aiohttp import web

from .auth import Identity
from .frames import text_frame
from .metrics import WorkerMetrics

log = logging.getLogger(__name__)

# Where a delivery goes: a room's members, a user's connections, a topic's subscribers, everyone.
ROOM: Final = "room"
USER: Final = "user"
TOPIC: Final = "topic"
EVERYONE: Final = "all"
MAX_MEMBERSHIPS: Final = 100  # rooms + topics per connection: bounds the memory one client can pin
SLOW_CONSUMER_CLOSE: Final = 1008
SLOW_CONSUMER_GRACE: Final = 2.0  # seconds a slow consumer's close frame gets before the cut
NO_MEMBERSHIPS: Final[frozenset[tuple[str, str]]] = frozenset()


class Connection:
    """One open /ws connection: its socket, its identity and memberships, its rate budget."""

    __slots__ = (
        "id",
        "identity",
        "memberships",
        "sent_in_window",
        "transport",
        "user",
        "window_ends",
        "ws",
    )

    def __init__(
        self, connection_id: str, ws: web.WebSocketResponse, transport: asyncio.Transport
    ) -> None:
        self.id = connection_id
        self.ws = ws
        self.transport = transport
        self.user: str | None = None
        # Who its token says it is; None when authentication is off (--no-auth).
        self.identity: Identity | None = None
        # Most connections never join anything: they share one empty frozenset until they do,
        # which saves an empty set (216 bytes) per idle connection.
        self.memberships: AbstractSet[tuple[str, str]] = NO_MEMBERSHIPS
        self.window_ends = 0.0
        self.sent_in_window = 0

    @property
    def sender(self) -> str:
        """How recipients see this connection: its user once identified, else its id."""
        return self.user if self.user is not None else self.id

    def within_rate(self, now: float, limit: int) -> bool:
        """At most `limit` messages in each one-second window (two compares and an add)."""
        if now >= self.window_ends:
            self.window_ends = now + 1.0
            self.sent_in_window = 0
        self.sent_in_window += 1
        return self.sent_in_window <= limit


class Hub:
    def __init__(self, metrics: WorkerMetrics, send_buffer_limit: int) -> None:
        self.metrics = metrics
        self.send_buffer_limit = send_buffer_limit
        self.connections: set[Connection] = set()
        # (kind, name) -> members; kind is ROOM, USER or TOPIC. Empty sets are removed.
        self._groups: dict[tuple[str, str], set[Connection]] = {}
        self._background: set[asyncio.Task[bool]] = set()
        # Slow consumers being closed: each is counted cut off once, however many deliveries
        # still reach it before its close completes.
        self._cutting: set[Connection] = set()

    def add(self, conn: Connection) -> None:
        self.connections.add(conn)

    def remove(self, conn: Connection) -> None:
        self.connections.discard(conn)
        self._cutting.discard(conn)
        for key in conn.memberships:
            self._discard(key, conn)
        conn.memberships = NO_MEMBERSHIPS
        if conn.user is not None:
            self._discard((USER, conn.user), conn)

    def identify(self, conn: Connection, user: str) -> None:
        if conn.user is not None:
            self._discard((USER, conn.user), conn)
        conn.user = user
        self._groups.setdefault((USER, user), set()).add(conn)

    def join(self, conn: Connection, kind: str, name: str) -> bool:
        """Add a room or topic membership; False when the connection already has too many."""
        key = (kind, name)
        if key not in conn.memberships:
            if len(conn.memberships) >= MAX_MEMBERSHIPS:
                return False
            conn.memberships = conn.memberships | {key}
            self._groups.setdefault(key, set()).add(conn)
        return True

    def leave(self, conn: Connection, kind: str, name: str) -> None:
        key = (kind, name)
        if key in conn.memberships:
            conn.memberships = conn.memberships - {key}
            self._discard(key, conn)

    def is_member(self, conn: Connection, kind: str, name: str) -> bool:
        return (kind, name) in conn.memberships

    def _discard(self, key: tuple[str, str], conn: Connection) -> None:
        members = self._groups.get(key)
        if members is not None:
            members.discard(conn)
            if not members:
                del self._groups[key]

    def recipients(self, route: str, name: str) -> Iterable[Connection]:
        if route == EVERYONE:
            return self.connections
        return self._groups.get((route, name), ())

    def deliver(
        self,
        message_type: str,
        route: str,
        name: str,
        payload: bytes,
        exclude: Connection | None,
        enqueued: float,
    ) -> int:
        """Write one frame to every local recipient; returns how many got it.

        `enqueued` is the perf_counter() (CLOCK_MONOTONIC, shared by the workers of one host) at
        which the delivery was handed over on whichever worker it started. The frame is encoded
        once.
        """
        members = self.recipients(route, name)
        if not members:  # still a fan-out, to nobody: every fan-out is observed the same way
            self.metrics.fanout_duration[message_type].observe(0.0)
            self.metrics.fanout_recipients[message_type].observe(0)
            return 0
        started = perf_counter()
        frame = text_frame(payload)
        limit = self.send_buffer_limit
        written = dropped_closed = 0
        for conn in members:
            if conn is exclude:
                continue
            transport = conn.transport
            if conn.ws.closed or transport.is_closing():
                dropped_closed += 1
                continue
            if transport.get_write_buffer_size() > limit:
                self._disconnect_slow(conn)
                continue
            transport.write(frame)
            written += 1
        finished = perf_counter()
        m = self.metrics
        if written:
            m.sent[message_type].value += written
            m.bytes_out.value += len(payload) * written
            # One observation per recipient, each at the time the last one was written: an upper
            # bound that costs one bisect per fan-out instead of one per recipient.
            m.delivery_latency.observe_many(finished - enqueued, written)
        if dropped_closed:
            m.dropped["closed"].value += dropped_closed
        m.fanout_duration[message_type].observe(finished - started)
        m.fanout_recipients[message_type].observe(written)
        return written

    def _disconnect_slow(self, conn: Connection) -> None:
        """A client that does not read loses its connection rather than the server's memory."""
        self.metrics.dropped["slow_consumer"].value += 1
        if conn.ws.closed or conn in self._cutting:
            return
        self._cutting.add(conn)
        self.metrics.slow_consumers_cut.value += 1
        log.info(
            "closing slow consumer %s: send buffer over %d bytes", conn.id, self.send_buffer_limit
        )
        # The close frame queues behind the backlog the client is not reading, so do not wait
        # for it to drain (aiohttp would wait for as long as the peer stays connected): send it,
        # and cut the TCP connection if the client has not let it through shortly after.
        task = asyncio.ensure_future(
            conn.ws.close(code=SLOW_CONSUMER_CLOSE, message=b"slow consumer", drain=False)
        )
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        asyncio.get_running_loop().call_later(SLOW_CONSUMER_GRACE, conn.transport.abort)
