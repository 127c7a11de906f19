"""Control-channel operations: one enum for both ends, and the list docs/architecture.md gives."""

from __future__ import annotations

import asyncio
import re
import socket
from pathlib import Path

from wsmon.exporter.control import ControlChannel, Op

ARCHITECTURE = Path(__file__).parents[2] / "docs" / "architecture.md"


async def test_every_op_survives_a_real_channel() -> None:
    """Each op, sent through a ControlChannel over a Unix socket pair, arrives as a plain string
    that compares equal to (and converts back to) the same member."""
    left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    sender = ControlChannel(*await asyncio.open_unix_connection(sock=left))
    receiver = ControlChannel(*await asyncio.open_unix_connection(sock=right))
    try:
        for op in Op:
            sender.send({"op": op, "req": 1}, b"body")
        for op in Op:
            frame = await asyncio.wait_for(receiver.receive(), 5)
            assert frame is not None
            header, body = frame
            assert type(header["op"]) is str
            assert header["op"] == op
            assert Op(header["op"]) is op
            assert body == b"body"
    finally:
        sender.close()
        receiver.close()


def test_architecture_lists_exactly_the_ops() -> None:
    text = ARCHITECTURE.read_text()
    sentence = re.search(r"raw body`\):(.*?)\.", text, re.DOTALL)
    assert sentence is not None, "the control-channel op list moved in docs/architecture.md"
    assert set(re.findall(r"`(\w+)`", sentence.group(1))) == {op.value for op in Op}
