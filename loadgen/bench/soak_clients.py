"""The soak's client process: steady load, churn and bad input at once, counted by kind.

    python -P -m wsmon.loadgen.bench.soak_clients URL --connections 1000 --seconds 600 \
        --churn-per-second 20 --bad-per-second 2

- steady: `--connections` connections, each in a chat room and a topic of GROUP_SIZE members (as
  the load generator sets them up), sending one message every `--interval` seconds on its own
  random phase, typed by `--mix`; every reply is matched by its id.
- churn: `--churn-per-second` more connections a second, each opening, sending join, echo, ping,
  chat and leave (waiting for each reply) and closing with 1000.
- bad input: `--bad-per-second` connections a second, each sending one bad frame, in turn of
  BAD_KINDS: malformed JSON, an unknown type, a binary frame (each answered with an error frame,
  then closed with 1000), a text frame of max_message_bytes + 1 bytes (the server closes with
  1009) and a text frame that is not UTF-8 (1007).

Prints one JSON line `{"ready": ...}` when the steady connections are open (the load runs
`--seconds` from then), and one JSON line of counts once every connection has closed. On the
aiohttp client, the lightest at hand, as the benchmark's clients (clients.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
from collections import Counter
from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import Any, Final

import aiohttp
import orjson
import uvloop

from ..client import GROUP_SIZE, PAYLOAD
from ..profiles import PROFILES, Mix, parse_mix
from .clients import emit, open_all, quiet_collector, session

EXTREME: Final = PROFILES["extreme"]
DEFAULT_MIX: Final = "echo=7,ping=1,chat=1,publish=1"
BAD_KINDS: Final = ("malformed_json", "unknown_type", "binary", "oversized", "invalid_utf8")
# The close code the server answers each closing kind with; the others get an error frame.
BAD_CLOSE: Final = {"oversized": 1009, "invalid_utf8": 1007}
BAD_ERROR: Final = {
    "malformed_json": "invalid_json",
    "unknown_type": "unknown_type",
    "binary": "binary_frame",
}
MAX_MESSAGE_BYTES: Final = 64 * 1024  # the server's default max_message_bytes
STEP_TIMEOUT: Final = 10.0  # seconds for any one reply or close of a churn or bad connection
GRACE_SECONDS: Final = 5.0  # for the steady connections' outstanding replies at the end
MAX_IN_FLIGHT: Final = 500  # churn and bad connections under way at once; past it one is skipped
CHURN_ROOMS: Final = 10
TEXT: Final = aiohttp.WSMsgType.TEXT


class Counts:
    """What the clients did, by kind: every figure the verdict compares with the server's."""

    def __init__(self) -> None:
        self.sent: Counter[str] = Counter()  # valid messages, by type (setup frames included)
        self.expected_replies: Counter[str] = Counter()  # messages with an id, by type
        self.replies: Counter[str] = Counter()  # replies matched by id, by the type asked
        self.deliveries: Counter[str] = Counter()  # chat/publish frames from other members
        self.bad_sent: Counter[str] = Counter()
        self.bad_answered: Counter[str] = Counter()  # the error frame or close code expected
        self.opened: Counter[str] = Counter()  # welcome received: steady, churn, bad
        self.closed: Counter[str] = Counter()  # "group code", e.g. "churn 1000"
        self.failures: Counter[str] = Counter()  # anything that did not go as the protocol says
        self.skipped: Counter[str] = Counter()  # not started: MAX_IN_FLIGHT under way

    def document(self) -> dict[str, Any]:
        return {name: dict(value) for name, value in vars(self).items()}


def _frame(message: dict[str, Any]) -> bytes:
    return orjson.dumps(message)


async def _next_text(ws: aiohttp.ClientWebSocketResponse, counts: Counts) -> dict[str, Any]:
    """The next text frame that is not a delivery (chat deliveries reach churn members too)."""
    while True:
        msg = await ws.receive(timeout=STEP_TIMEOUT)
        if msg.type is not aiohttp.WSMsgType.TEXT:
            raise ConnectionError(f"expected a text frame, got {msg.type.name} {msg.data!r}")
        message: dict[str, Any] = orjson.loads(msg.data)
        if "from" in message:
            counts.deliveries[str(message.get("type"))] += 1
            continue
        return message


async def _close(ws: aiohttp.ClientWebSocketResponse, counts: Counts, group: str) -> None:
    await asyncio.wait_for(ws.close(code=1000), STEP_TIMEOUT)
    counts.closed[f"{group} {ws.close_code}"] += 1


async def _welcomed(
    client: aiohttp.ClientSession, url: str, counts: Counts, group: str
) -> aiohttp.ClientWebSocketResponse:
    ws = await asyncio.wait_for(
        client.ws_connect(url, compress=0, autoping=True, max_msg_size=0), STEP_TIMEOUT
    )
    msg = await ws.receive(timeout=STEP_TIMEOUT)
    if msg.type is not aiohttp.WSMsgType.TEXT or orjson.loads(msg.data).get("type") != "welcome":
        await ws.close()
        raise ConnectionError(f"no welcome: {msg.type.name}")
    counts.opened[group] += 1
    return ws


async def churn_one(client: aiohttp.ClientSession, url: str, counts: Counts, number: int) -> None:
    """Open, join, echo, ping, chat, leave (each reply awaited), close with 1000."""
    room = f"soak-churn-{number % CHURN_ROOMS}"
    ws = await _welcomed(client, url, counts, "churn")
    messages: list[tuple[str, dict[str, Any], str]] = [
        ("join", {"room": room}, "ack"),
        ("echo", {"payload": PAYLOAD}, "echo"),
        ("ping", {}, "pong"),
        ("chat", {"room": room, "text": PAYLOAD}, "ack"),
        ("leave", {"room": room}, "ack"),
    ]
    try:
        for ref, (message_type, body, answer) in enumerate(messages, 1):
            await ws.send_frame(_frame({"type": message_type, "id": ref, **body}), TEXT)
            counts.sent[message_type] += 1
            counts.expected_replies[message_type] += 1
            reply = await _next_text(ws, counts)
            if reply.get("type") == answer and reply.get("id") == ref:
                counts.replies[message_type] += 1
            else:
                counts.failures[f"churn_{message_type}_got_{reply.get('type')}"] += 1
    finally:
        await _close(ws, counts, "churn")


async def bad_one(
    client: aiohttp.ClientSession, url: str, counts: Counts, kind: str, max_bytes: int
) -> None:
    """One bad frame of `kind`; then the error frame and a normal close, or the server's close."""
    ws = await _welcomed(client, url, counts, "bad")
    try:
        if kind == "malformed_json":
            await ws.send_frame(b'{"type": "echo", "id": 1, ', TEXT)
        elif kind == "unknown_type":
            await ws.send_frame(b'{"type": "soak-no-such-type", "id": 1}', TEXT)
        elif kind == "binary":
            await ws.send_frame(b"\x00\x01binary\xff", aiohttp.WSMsgType.BINARY)
        elif kind == "oversized":
            await ws.send_frame(b"x" * (max_bytes + 1), TEXT)
        elif kind == "invalid_utf8":
            await ws.send_frame(b'{"type": "echo", "payload": "\xff\xfe"}', TEXT)
        else:
            raise ValueError(kind)
        counts.bad_sent[kind] += 1
        if kind in BAD_CLOSE:
            msg = await ws.receive(timeout=STEP_TIMEOUT)
            if msg.type is aiohttp.WSMsgType.CLOSE or ws.closed:
                # aiohttp answers the server's close frame itself.
                code = ws.close_code
                counts.closed[f"bad {code}"] += 1
                if code == BAD_CLOSE[kind]:
                    counts.bad_answered[kind] += 1
                else:
                    counts.failures[f"bad_{kind}_closed_{code}"] += 1
                return
            counts.failures[f"bad_{kind}_got_{msg.type.name}"] += 1
        else:
            reply = await _next_text(ws, counts)
            if reply.get("type") == "error" and reply.get("code") == BAD_ERROR[kind]:
                counts.bad_answered[kind] += 1
            else:
                counts.failures[f"bad_{kind}_got_{reply.get('type')}_{reply.get('code')}"] += 1
        await _close(ws, counts, "bad")
    finally:
        if not ws.closed:
            await ws.close()


async def steady_one(
    ws: aiohttp.ClientWebSocketResponse,
    index: int,
    mix: Mix,
    interval: float,
    stop_at: float,
    rng: random.Random,
    counts: Counts,
) -> None:
    """Setup (join, subscribe: no id, no reply), then one message every `interval` seconds."""
    group = index // GROUP_SIZE
    room, topic, user = f"soak-room-{group}", f"soak-topic-{group}", f"soak-user-{index}"
    bodies: dict[str, dict[str, Any]] = {
        "echo": {"payload": PAYLOAD},
        "ping": {},
        "chat": {"room": room, "text": PAYLOAD},
        "publish": {"topic": topic, "payload": PAYLOAD},
        "notify": {"user": user, "payload": PAYLOAD},
        "broadcast": {"payload": PAYLOAD},
    }
    prefixes = {t: _frame({"type": t, **bodies[t]})[:-1] + b',"id":' for t in mix.types}
    setup = [
        (needed, _frame({"type": setup_type, field: name}), setup_type)
        for needed, setup_type, field, name in (
            ("chat", "join", "room", room),
            ("publish", "subscribe", "topic", topic),
            ("notify", "identify", "user", user),
        )
        if needed in mix.types
    ]
    pending: dict[int, str] = {}
    answered_all = asyncio.Event()
    sending = True

    async def receive() -> None:
        async for msg in ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                counts.failures[f"steady_got_{msg.type.name}"] += 1
                continue
            message = orjson.loads(msg.data)
            asked = pending.pop(message["id"], None) if "id" in message else None
            if asked is not None:
                counts.replies[asked] += 1
                if not sending and not pending:
                    answered_all.set()
            elif message.get("type") == "error":
                counts.failures[f"steady_error_{message.get('code')}"] += 1
            else:
                counts.deliveries[str(message.get("type"))] += 1

    reader = asyncio.create_task(receive())
    try:
        for _, frame, setup_type in setup:
            await ws.send_frame(frame, TEXT)
            counts.sent[setup_type] += 1
        due, sequence = perf_counter() + rng.random() * interval, 0
        while due < stop_at:
            delay = due - perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            sequence += 1
            message_type = mix.pick(rng.random())
            pending[sequence] = message_type
            await ws.send_frame(prefixes[message_type] + b"%d}" % sequence, TEXT)
            counts.sent[message_type] += 1
            counts.expected_replies[message_type] += 1
            due += interval
        sending = False
        if pending:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(answered_all.wait(), GRACE_SECONDS)
    except (aiohttp.ClientError, ConnectionError) as exc:
        counts.failures[f"steady_{type(exc).__name__}"] += 1
    finally:
        if pending:
            counts.failures["steady_reply_missing"] += len(pending)
        # Closed under the reader's feet: aiohttp ends its receive (a cancelled receive would mark
        # the connection 1006 and drop the TCP connection without waiting for the server's close).
        # The close code is read once the reader has ended too: a reader that got one more frame
        # before the close finishes the close handshake itself, after close() has returned.
        await asyncio.wait_for(ws.close(code=1000), STEP_TIMEOUT)
        await asyncio.wait_for(reader, STEP_TIMEOUT)
        counts.closed[f"steady {ws.close_code}"] += 1


async def _trickle(
    rate: float,
    stop_at: float,
    counts: Counts,
    group: str,
    start: Callable[[int], Awaitable[None]],
) -> None:
    """Start `start(n)` `rate` times a second until `stop_at`; then wait for every one."""
    if rate <= 0:
        return
    under_way: set[asyncio.Task[None]] = set()

    async def guarded(number: int) -> None:
        try:
            await start(number)
        except Exception as exc:  # counted, never fatal: the verdict reports every failure
            counts.failures[f"{group}_{type(exc).__name__}"] += 1

    due, number = perf_counter(), 0
    while due < stop_at:
        delay = due - perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if len(under_way) >= MAX_IN_FLIGHT:
            counts.skipped[group] += 1
        else:
            task = asyncio.create_task(guarded(number))
            under_way.add(task)
            task.add_done_callback(under_way.discard)
        number += 1
        due += 1.0 / rate
    if under_way:
        await asyncio.gather(*under_way)


async def soak(args: argparse.Namespace) -> None:
    mix = parse_mix(args.mix)
    counts = Counts()
    async with session() as client:
        workers: list[int] = []
        sockets, failed, connect_seconds = await open_all(
            client, args.url, args.connections, workers
        )
        counts.opened["steady"] += len(sockets)
        if failed:
            counts.failures["steady_connect"] += failed
        quiet_collector()
        emit({"ready": len(sockets), "failed": failed, "connect_seconds": connect_seconds})
        stop_at = perf_counter() + args.seconds
        rng = random.Random(args.seed)

        async def churn(number: int) -> None:
            await churn_one(client, args.url, counts, number)

        async def bad(number: int) -> None:
            kind = BAD_KINDS[number % len(BAD_KINDS)]
            await bad_one(client, args.url, counts, kind, args.max_message_bytes)

        steady = [
            steady_one(ws, index, mix, args.interval, stop_at, random.Random(rng.random()), counts)
            for index, ws in enumerate(sockets)
        ]
        outcomes = await asyncio.gather(
            *steady,
            _trickle(args.churn_per_second, stop_at, counts, "churn", churn),
            _trickle(args.bad_per_second, stop_at, counts, "bad", bad),
            return_exceptions=True,
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                counts.failures[f"task_{type(outcome).__name__}"] += 1
    emit({"counts": counts.document(), "workers": dict(Counter(str(w) for w in workers))})


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("url")
    parser.add_argument("--connections", type=int, default=EXTREME.connections)
    parser.add_argument("--interval", type=float, default=EXTREME.interval)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--churn-per-second", type=float, default=20.0)
    parser.add_argument("--bad-per-second", type=float, default=2.0)
    parser.add_argument("--mix", default=DEFAULT_MIX)
    parser.add_argument("--max-message-bytes", type=int, default=MAX_MESSAGE_BYTES)
    parser.add_argument("--seed", type=int, default=1)
    uvloop.run(soak(parser.parse_args()))


if __name__ == "__main__":
    main()
