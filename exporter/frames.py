"""Server-to-client WebSocket frames, encoded once and written to many sockets.

Fan-out writes the same bytes to every recipient's transport instead of awaiting one send coroutine
per recipient: a broadcast to 10,000 connections is then 10,000 `transport.write` calls, not 10,000
tasks. This is safe beside aiohttp's own writer because compression is off, so aiohttp also writes
each frame to the transport whole and synchronously: frames never interleave mid-frame.
"""

from __future__ import annotations

import struct

_FIN_TEXT = 0x81  # FIN bit + opcode 1 (text); server frames are never masked (RFC 6455 5.1)
# Most frames are short: their two header bytes are looked up rather than built each time.
_SHORT_HEADERS = tuple(bytes((_FIN_TEXT, length)) for length in range(126))


def text_frame(payload: bytes) -> bytes:
    """One unfragmented, unmasked text frame carrying `payload` (UTF-8 JSON)."""
    length = len(payload)
    if length < 126:
        return _SHORT_HEADERS[length] + payload
    if length < 65536:
        return struct.pack("!BBH", _FIN_TEXT, 126, length) + payload
    return struct.pack("!BBQ", _FIN_TEXT, 127, length) + payload
