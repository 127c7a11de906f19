"""The control channel between the supervisor and a worker: framed messages over a Unix socket.

A frame is `u32 length | u32 header length | header (orjson object) | body (raw bytes)`. The body
carries relayed WebSocket payloads and snapshots as they are, so a relay never re-encodes a message.
"""

from __future__ import annotations

import asyncio
import struct
from enum import StrEnum
from typing import Any

import orjson

_LENGTHS = struct.Struct("!II")
# The listener a handed-over connection came in on: the first byte of its hand-off message, the
# client's address the rest. PUBLIC serves /ws; OPERATIONS, `metrics_listen`, the scrapes.
PUBLIC = b"w"
OPERATIONS = b"o"
MAX_FRAME = 256 * 1024 * 1024


class Op(StrEnum):
    """A frame's `op` (header field): every operation either end of the channel sends.

    A StrEnum so that headers carry plain strings and a received `op` compares equal to its member.
    """

    HELLO = "hello"  # worker: started and serving
    LOAD = "load"  # worker: how many handed-over connections have ended (and whose: caps.py)
    CLAIM = "claim"  # worker: may this user open one more connection? (caps.py)
    RELAY = "relay"  # both ways: a delivery for the other workers' local recipients
    SNAPSHOT = "snapshot"  # worker: its metrics (pushed every second, or answering a request)
    SNAPSHOT_REQUEST = "snapshot_request"  # supervisor: send a fresh snapshot now
    COLLECT = "collect"  # worker: send the pool's merged metrics (for /metrics)
    HEALTH = "health"  # worker: send the /api/health document
    REPLY = "reply"  # supervisor: the answer to a collect, health or claim
    DRAIN = "drain"  # supervisor: close every connection with 1001 and exit


class ControlChannel:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    @staticmethod
    def encode(header: dict[str, Any], body: bytes = b"") -> bytes:
        """One frame, ready for `write` (encoded once when it goes to several peers)."""
        head = orjson.dumps(header)
        return _LENGTHS.pack(len(head) + len(body), len(head)) + head + body

    @staticmethod
    def decode(frame: bytes) -> tuple[dict[str, Any], bytes]:
        """A whole frame `encode` made (a broker message); ValueError when it is none."""
        if len(frame) < _LENGTHS.size:
            raise ValueError("too short for a control frame")
        total, head_length = _LENGTHS.unpack_from(frame)
        data = frame[_LENGTHS.size :]
        if total != len(data) or head_length > total:
            raise ValueError("not a control frame")
        header = orjson.loads(data[:head_length])
        if not isinstance(header, dict):
            raise ValueError("a control frame's header is an object")
        return header, data[head_length:]

    def write(self, frame: bytes) -> None:
        """Queue an encoded frame; never blocks (the peer is our own process on the same host).

        A frame for a peer that has gone is dropped, as asyncio's own loop does: uvloop raises on
        every write once the transport is closed. On the supervisor's side a worker that died is
        still `alive` until its exit is reaped, and meanwhile deliveries are relayed to it; a
        raise in Relay.forward ended the loop over the workers, so the workers after the dead one
        lost those deliveries (tests/integration/test_faults.py, one of 3 workers SIGKILLed
        mid-broadcast). On a worker's side, a load report due just after the supervisor went.
        """
        if not self._writer.transport.is_closing():
            self._writer.write(frame)

    def send(self, header: dict[str, Any], body: bytes = b"") -> None:
        self.write(self.encode(header, body))

    def backlog(self) -> int:
        """Bytes sent but not yet taken by the peer."""
        transport = self._writer.transport
        return 0 if transport.is_closing() else transport.get_write_buffer_size()

    async def receive(self) -> tuple[dict[str, Any], bytes] | None:
        """The next frame, or None once the peer has gone."""
        try:
            lengths = await self._reader.readexactly(_LENGTHS.size)
            total, head_length = _LENGTHS.unpack(lengths)
            if total > MAX_FRAME or head_length > total:
                raise ValueError(f"control frame of {total} bytes is corrupt or too large")
            data = await self._reader.readexactly(total)
        except (asyncio.IncompleteReadError, ConnectionError):
            return None
        header = orjson.loads(data[:head_length])
        return header, data[head_length:]

    def close(self) -> None:
        self._writer.close()
