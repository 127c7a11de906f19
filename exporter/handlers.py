"""What each /ws message type does. Handlers are plain functions of the hub and the message; the
socket loop in app.py sends what they return and times them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import protocol
from .cluster import Cluster
from .hub import EVERYONE, MAX_MEMBERSHIPS, ROOM, TOPIC, USER, Connection, Hub
from .metrics import Cell, Histogram, WorkerMetrics
from .protocol import MessageId, ProtocolError

# A handler returns the reply payload for the sender, or None when there is nothing to say.
Handler = Callable[[Connection, dict[str, Any], MessageId, float], bytes | None]

# The reply each type earns; everything not listed here is acknowledged with an ack.
REPLY_TYPES = {"echo": "echo", "ping": "pong"}


@dataclass(slots=True)
class Route:
    """A message type's handler with its metric cells bound once, so dispatch is one dict lookup."""

    handle: Handler | None  # None: answered with the received frame itself (echo)
    received: Cell
    latency: Histogram
    replies: Cell
    failures: Cell  # the handler raised something other than ProtocolError


class Handlers:
    def __init__(self, hub: Hub, cluster: Cluster, metrics: WorkerMetrics) -> None:
        self.hub = hub
        self.cluster = cluster
        self.routes: dict[str, Route] = {}
        for message_type in protocol.CLIENT_TYPES:
            reply_type = REPLY_TYPES.get(message_type, "ack")
            self.routes[message_type] = Route(
                handle=None if reply_type == "echo" else getattr(self, message_type),
                received=metrics.received[message_type],
                latency=metrics.latency[message_type],
                replies=metrics.sent[reply_type],
                failures=metrics.failures[message_type],
            )

    @staticmethod
    def _ack(ref: MessageId) -> bytes | None:
        return protocol.ack(ref) if ref is not None else None

    def _fanout(
        self,
        message_type: str,
        route: str,
        name: str,
        sender: Connection,
        obj: dict[str, Any],
        exclude: Connection | None,
        enqueued: float,
        ref: MessageId,
    ) -> None:
        payload = protocol.delivery(message_type, sender.sender, obj, ref)
        # Relay first: the other workers then fan out while this one does, not after it.
        self.cluster.relay(message_type, route, name, payload, enqueued)
        self.hub.deliver(message_type, route, name, payload, exclude, enqueued)

    def ping(
        self, conn: Connection, obj: dict[str, Any], ref: MessageId, started: float
    ) -> bytes | None:
        return protocol.pong(ref)

    def identify(
        self, conn: Connection, obj: dict[str, Any], ref: MessageId, started: float
    ) -> bytes | None:
        if conn.identity is not None:
            raise ProtocolError(
                "identify", protocol.FORBIDDEN, "user: the token names this connection's user", ref
            )
        self.hub.identify(conn, obj["user"])
        return self._ack(ref)

    @staticmethod
    def _allowed(conn: Connection, kind: str, message_type: str, name: str, ref: MessageId) -> None:
        """A room or topic outside the prefixes the token grants is refused."""
        identity = conn.identity
        if identity is None:
            return
        allowed = identity.may_join(name) if kind == ROOM else identity.may_use_topic(name)
        if not allowed:
            field = "room" if kind == ROOM else "topic"
            raise ProtocolError(
                message_type, protocol.FORBIDDEN, f"{field}: the token does not grant {name!r}", ref
            )

    def _join(
        self, kind: str, message_type: str, conn: Connection, name: str, ref: MessageId
    ) -> bytes | None:
        self._allowed(conn, kind, message_type, name, ref)
        if not self.hub.join(conn, kind, name):
            raise ProtocolError(
                message_type,
                protocol.TOO_MANY_MEMBERSHIPS,
                f"a connection may be in at most {MAX_MEMBERSHIPS} rooms and topics",
                ref,
            )
        return self._ack(ref)

    def join(
        self, conn: Connection, obj: dict[str, Any], ref: MessageId, started: float
    ) -> bytes | None:
        return self._join(ROOM, "join", conn, obj["room"], ref)

    def subscribe(
        self, conn: Connection, obj: dict[str, Any], ref: MessageId, started: float
    ) -> bytes | None:
        return self._join(TOPIC, "subscribe", conn, obj["topic"], ref)

    def leave(
        self, conn: Connection, obj: dict[str, Any], ref: MessageId, started: float
    ) -> bytes | None:
        self.hub.leave(conn, ROOM, obj["room"])
        return self._ack(ref)

    def unsubscribe(
        self, conn: Connection, obj: dict[str, Any], ref: MessageId, started: float
    ) -> bytes | None:
        self.hub.leave(conn, TOPIC, obj["topic"])
        return self._ack(ref)

    def chat(
        self, conn: Connection, obj: dict[str, Any], ref: MessageId, started: float
    ) -> bytes | None:
        room = obj["room"]
        if not self.hub.is_member(conn, ROOM, room):
            raise ProtocolError(
                "chat", protocol.NOT_IN_ROOM, f"room: join {room!r} before chatting in it", ref
            )
        self._fanout("chat", ROOM, room, conn, obj, conn, started, ref)
        return self._ack(ref)

    def notify(
        self, conn: Connection, obj: dict[str, Any], ref: MessageId, started: float
    ) -> bytes | None:
        # Every connection of the user gets it, the sender's own included.
        self._fanout("notify", USER, obj["user"], conn, obj, None, started, ref)
        return self._ack(ref)

    def publish(
        self, conn: Connection, obj: dict[str, Any], ref: MessageId, started: float
    ) -> bytes | None:
        self._allowed(conn, TOPIC, "publish", obj["topic"], ref)
        self._fanout("publish", TOPIC, obj["topic"], conn, obj, conn, started, ref)
        return self._ack(ref)

    def broadcast(
        self, conn: Connection, obj: dict[str, Any], ref: MessageId, started: float
    ) -> bytes | None:
        if conn.identity is not None and not conn.identity.admin:
            raise ProtocolError(
                "broadcast", protocol.FORBIDDEN, "broadcast needs the admin role", ref
            )
        self._fanout("broadcast", EVERYONE, "", conn, obj, conn, started, ref)
        return self._ack(ref)
