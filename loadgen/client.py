"""The open-model connection runner, on the `websockets` client (not the server's aiohttp).

Each connection sends on its own fixed schedule, `t0 + k * interval`, whatever the server does: a
late send goes out at once and its latency still counts from the scheduled time, so a stalled
server (or a stalled load generator) shows in the percentiles instead of silently lowering the
rate (coordinated omission). A separate receiver matches replies by `id`.

Accounting, which the report relies on:

- a connection succeeds when its welcome frame arrives; every attempt counts;
- every scheduled slot of an open connection is a message attempt; it ends as a reply, an error
  frame, a timeout (no reply by the end of the grace period), `lost` (the server closed the
  connection first) or `not_sent` (scheduled after the server closed it). Nothing is dropped;
- every chat, publish, notify and broadcast carries a run-wide number, and the ledger
  (delivery.py) knows which connections, on which instance, must receive it.

Memory: about 30 KiB per connection (the websockets client, two tasks, the pending-id table).
"""

from __future__ import annotations

import asyncio
import errno
import math
import random
import socket
from collections.abc import Callable
from dataclasses import dataclass
from time import perf_counter
from typing import Any, Final
from urllib.parse import urlsplit

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidStatus,
    InvalidURI,
)

from wsmon import __version__

from .delivery import FAN_OUT_TYPES as FAN_OUT_TYPES
from .delivery import GROUP_SIZE as GROUP_SIZE
from .delivery import KINDS, Ledger, Recipient
from .profiles import Mix, Profile
from .stats import LOST, TIMEOUT, Recorder, TimelinePoint

PAYLOAD: Final = "wsmon loadtest payload, 32 bytes"
# Setup each message type needs before it can be sent (chat needs membership of the room, ...).
SETUP: Final = {"chat": "join", "publish": "subscribe", "notify": "identify"}
# After the last reply, deliveries relayed between workers may still be on their way.
DELIVERY_SETTLE_SECONDS: Final = 0.2
CLOSE_TIMEOUT_SECONDS: Final = 2.0
MAX_FRAME_BYTES: Final = 1 << 20


@dataclass(frozen=True)
class RunPlan:
    profile: Profile
    urls: tuple[str, ...]
    mix: Mix
    seed: int
    token: str | None = None
    connect_timeout: float = 5.0
    grace: float = 2.0  # how long to wait for outstanding replies after the last send
    # Local addresses to connect from, in turn (empty: the system's choice). One address has
    # about 28,000 ephemeral ports for one server; several on 127.0.0.0/8 take a run past that.
    sources: tuple[str, ...] = ()

    def source(self, index: int) -> str | None:
        """Where connection `index` connects from: each URL's connections take the sources in
        turn, so every instance sees all of them."""
        if not self.sources:
            return None
        return self.sources[index // len(self.urls) % len(self.sources)]


@dataclass(frozen=True)
class RunTimes:
    """Seconds since the start: when sending stopped and when the last connection closed."""

    sending_ended: float
    finished: float


def bind_source(sock: socket.socket, source: str) -> None:
    """Bind `sock` to the local address `source`, leaving its port to connect()
    (IP_BIND_ADDRESS_NO_PORT), where only the four-tuple must be unused. A plain bind() must find
    a port free on that address towards every destination, and its search grows with the ports
    held and in TIME_WAIT: past 5,000 connections from one address it took 88 % of a benchmark
    client's CPU, opening fewer than 200 a second."""
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_BIND_ADDRESS_NO_PORT, 1)
    sock.bind((source, 0))


async def _socket_from(url: str, source: str, seconds: float) -> socket.socket:
    """A TCP connection from `source` to `url`'s host and port within `seconds`, for the
    handshake to run on."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "wss" else 80)
    family = socket.AF_INET6 if ":" in source else socket.AF_INET
    loop = asyncio.get_running_loop()
    found = await loop.getaddrinfo(parts.hostname, port, family=family, type=socket.SOCK_STREAM)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        bind_source(sock, source)
        await asyncio.wait_for(loop.sock_connect(sock, found[0][4]), seconds)
    except BaseException:
        sock.close()
        raise
    return sock


def _open(
    url: str, token: str | None, timeout: float, sock: socket.socket | None = None
) -> connect:
    headers = {"Authorization": f"Bearer {token}"} if token else None
    # compression=None: the server has permessage-deflate off and it would cost client CPU.
    # ping_interval=None: the client sends no WebSocket pings. wsmon sends none either (it finds
    # dead peers with TCP keepalive); websockets would still answer a ping from another server.
    # proxy=None: a load test measures the server, not a proxy picked up from the environment.
    # sock: already connected from a source address (_socket_from), or None to connect to `url`.
    return connect(
        url,
        compression=None,
        open_timeout=timeout,
        ping_interval=None,
        close_timeout=CLOSE_TIMEOUT_SECONDS,
        max_size=MAX_FRAME_BYTES,
        max_queue=64,
        proxy=None,
        additional_headers=headers,
        user_agent_header=f"wsmon-loadtest/{__version__}",
        sock=sock,
    )


def connect_error_kind(exc: BaseException) -> str:
    """A short, bounded name for why a connection attempt failed."""
    if isinstance(exc, TimeoutError):
        return "connect_timeout"
    if isinstance(exc, ConnectionRefusedError):
        return "connect_refused"
    if isinstance(exc, socket.gaierror):
        return "dns_error"
    if isinstance(exc, InvalidStatus):
        return f"http_{exc.response.status_code}"
    if isinstance(exc, InvalidURI):
        return "invalid_uri"
    if isinstance(exc, InvalidHandshake):
        return "handshake_failed"
    if isinstance(exc, OSError) and isinstance(exc.errno, int) and exc.errno in errno.errorcode:
        return f"connect_{errno.errorcode[exc.errno].lower()}"
    return "connect_error"


def close_kind(exc: ConnectionClosed) -> str:
    """`closed_1013` for a worker at capacity, `closed_1006` when no close frame came, ..."""
    return f"closed_{exc.rcvd.code if exc.rcvd is not None else 1006}"


class TargetUnreachable(Exception):
    """No WebSocket server answers at a target; the message says which and why."""


async def probe(url: str, seconds: float, token: str | None) -> str | None:
    """One WebSocket handshake with `url`: None when it answers, else what went wrong.

    A server that completes the handshake and then refuses (1013, at capacity) is reachable:
    the run will report its refusals as failed connections.
    """
    try:
        async with _open(url, token, seconds):
            return None
    except Exception as exc:  # every failure becomes a message; the caller exits with status 2
        kind = connect_error_kind(exc)
    explanations = {
        "connect_timeout": f"no answer within {seconds:g} s",
        "connect_refused": "connection refused (nothing listens there; is `wsmon serve` running?"
        " `wsmon loadtest --start-server` starts one on a loopback address)",
        "dns_error": "the host name does not resolve",
        "invalid_uri": "not a ws:// or wss:// URL",
        "handshake_failed": "the server did not complete a WebSocket handshake",
    }
    if kind.startswith("http_"):
        detail = f"the server answered HTTP {kind[5:]} instead of a WebSocket handshake"
        return f"{url}: {detail} (wsmon serves WebSockets on /ws)"
    return f"{url}: {explanations.get(kind, f'cannot connect ({kind})')}"


async def _sleep_until(deadline: float) -> None:
    delay = deadline - perf_counter()
    if delay > 0:
        await asyncio.sleep(delay)


_MID = "@@mid@@"  # where the message number goes in a fan-out frame, until it is a %010d


def _frames(
    index: int, mix: Mix, mid_text: str
) -> tuple[list[tuple[str, bytes]], dict[str, bytes]]:
    """Connection `index`'s setup frames, and per message type a bytes template: a message is
    `template % id`, or `template % (mid, id)` for a fan-out type, whose text or payload is
    `mid_text` (`Ledger.template`, with its `%010d`): no JSON encoding per message.
    """
    group = index // GROUP_SIZE
    names = {
        "room": f"loadtest-room-{group}",
        "topic": f"loadtest-topic-{group}",
        "user": f"loadtest-user-{index}",
    }
    bodies: dict[str, dict[str, Any]] = {
        "echo": {"payload": PAYLOAD},
        "ping": {},
        "chat": {"room": names["room"], "text": _MID},
        "publish": {"topic": names["topic"], "payload": _MID},
        # A notification to the sender's own user: delivered back to it, on any worker.
        "notify": {"user": names["user"], "payload": _MID},
        "broadcast": {"payload": _MID},
    }
    setup_fields = {"join": "room", "subscribe": "topic", "identify": "user"}
    setup = []
    for setup_type in (SETUP[t] for t in mix.types if t in SETUP):
        field = setup_fields[setup_type]
        setup.append((setup_type, orjson.dumps({"type": setup_type, field: names[field]})))
    mid = mid_text.encode()
    templates = {
        t: orjson.dumps({"type": t, **bodies[t]})
        .replace(b"%", b"%%")[:-1]
        .replace(_MID.encode(), mid)
        + b',"id":%d}'
        for t in mix.types
    }
    return setup, templates


class Session:
    """One open connection: its sender on the schedule and its receiver matching replies."""

    def __init__(self, run: Run, index: int, ws: ClientConnection, rng: random.Random) -> None:
        self.run = run
        self.ws = ws
        self.rng = rng
        self.setup, self.templates = _frames(index, run.plan.mix, run.recorder.ledger.template)
        self.pending: dict[int, float] = {}  # id -> time the latency counts from
        # id -> (mid, per-instance recipients counted as expected), taken back if an error
        # answers it
        self.fan_out: dict[int, tuple[int, list[int]]] = {}
        self.recipient = Recipient(index)
        self.closing = False  # we are closing: a close is not a drop
        self.dropped = False  # the server closed the connection during the run

    async def serve(self) -> None:
        recorder = self.run.recorder
        receiver = asyncio.create_task(self._receive())
        try:
            # Sent without an id: the server answers nothing, and orders them before any message.
            for setup_type, frame in self.setup:
                await self.ws.send(frame, text=True)
                recorder.setup_frames[setup_type] += 1
        except ConnectionClosed as exc:
            self._drop(exc)
        try:
            await self._send()
            if not self.dropped:
                await self.run.closing.wait()
        finally:
            self.closing = True
            await self.ws.close()
            await receiver
        if self.pending:
            recorder.failed(LOST if self.dropped else TIMEOUT, len(self.pending))

    def _drop(self, exc: ConnectionClosed) -> None:
        """The server closed the connection; the sender or the receiver may notice first."""
        if not self.dropped:
            self.dropped = True
            self.run.recorder.dropped[close_kind(exc)] += 1
            self.run.recorder.ledger.gone(self.recipient)

    async def _send(self) -> None:
        plan, recorder, mix = self.run.plan, self.run.recorder, self.run.plan.mix
        interval, end, rng, pending = plan.profile.interval, self.run.end, self.rng, self.pending
        send, templates, fan_out = self.ws.send, self.templates, self.fan_out
        ledger, recipient = recorder.ledger, self.recipient
        # A random phase per connection, so the sockets do not fire in lockstep.
        t0 = perf_counter() + rng.random() * interval
        k = 0
        while (scheduled := t0 + k * interval) < end:
            await _sleep_until(scheduled)
            if self.dropped:
                recorder.not_sent(math.ceil((end - scheduled) / interval))
                return
            k += 1
            message_type = mix.pick(rng.random())
            # Latency counts from the scheduled time; from the actual one if a timer fired early.
            pending[k] = min(scheduled, perf_counter())
            recorder.message_sent(message_type)
            kind = KINDS.get(message_type)
            if kind is None:
                frame = templates[message_type] % k
            else:
                mid, added = ledger.sent(recipient, kind)
                if added is not None:
                    fan_out[k] = (mid, added)
                frame = templates[message_type] % (mid, k)
            try:
                await send(frame, text=True)
            except ConnectionClosed as exc:
                if (owed := fan_out.pop(k, None)) is not None:  # never reached the server
                    ledger.refused(recipient.index, *owed)
                self._drop(exc)
                recorder.not_sent(math.ceil((end - scheduled) / interval) - 1)
                return

    async def _receive(self) -> None:
        recorder, pending, recv = self.run.recorder, self.pending, self.ws.recv
        ledger, recipient, fan_out = recorder.ledger, self.recipient, self.fan_out
        try:
            while True:
                raw = await recv(decode=False)
                now = perf_counter()
                try:
                    message = orjson.loads(raw)
                    ref = message.get("id")
                    message_type = message.get("type")
                except (orjson.JSONDecodeError, AttributeError):
                    recorder.error_frames["unreadable_frame"] += 1
                    continue
                if ref is not None and (sent_at := pending.pop(ref, None)) is not None:
                    recorder.reply(now - sent_at)
                    if fan_out:
                        fan_out.pop(ref, None)
                    if not recipient.ready:
                        ledger.ready(recipient)
                elif message_type == "error":
                    code = str(message.get("code"))
                    recorder.error_frames[code] += 1
                    ref = message.get("ref")
                    if pending.pop(ref, None) is not None:
                        recorder.failed(f"error:{code}")
                        # Refused (or failed, possibly in part): no delivery of it is owed.
                        if (owed := fan_out.pop(ref, None)) is not None:
                            ledger.refused(recipient.index, *owed)
                    elif ref is None:
                        # A set-up frame was refused: which rooms it is in is not known.
                        recipient.refused = True
                else:
                    recorder.deliveries[str(message_type)] += 1
                    ledger.delivered(recipient, str(message_type), message)
        except ConnectionClosed as exc:
            if not self.closing:
                self._drop(exc)
        finally:
            self.run.recorder.connections_open -= 1


class Run:
    """Opens `connections` sockets evenly over the ramp-up, runs them until the end of the
    duration, waits up to `grace` seconds for outstanding replies, then closes them all.
    """

    def __init__(
        self,
        plan: RunPlan,
        recorder: Recorder,
        on_tick: Callable[[TimelinePoint], None] | None = None,
    ) -> None:
        self.plan = plan
        self.recorder = recorder
        recorder.ledger = Ledger(len(plan.urls), verify_notify=plan.token is None)
        self.on_tick = on_tick
        self.start = 0.0
        self.end = 0.0
        # Set once every reply is in (or the grace period is over): all sessions close together,
        # so no connection leaves while deliveries to it are still on their way.
        self.closing = asyncio.Event()

    async def execute(self) -> RunTimes:
        profile = self.plan.profile
        self.start = perf_counter()
        self.end = self.start + profile.ramp_up + profile.duration
        ticker = asyncio.create_task(self._tick())
        closer = asyncio.create_task(self._close_when_answered())
        spacing = profile.ramp_up / profile.connections
        await asyncio.gather(
            *(self._connection(i, self.start + i * spacing) for i in range(profile.connections))
        )
        await closer
        ticker.cancel()
        finished = perf_counter() - self.start
        self._emit(self.recorder.tick(finished))
        return RunTimes(sending_ended=self.end - self.start, finished=finished)

    def _emit(self, point: TimelinePoint) -> None:
        if self.on_tick is not None:
            self.on_tick(point)

    async def _tick(self) -> None:
        second = 1
        while True:
            await _sleep_until(self.start + second)
            self._emit(self.recorder.tick(second))
            second += 1

    async def _close_when_answered(self) -> None:
        await _sleep_until(self.end)
        deadline = self.end + self.plan.grace
        ledger = self.recorder.ledger
        # Polling a few times a second for a few seconds costs less than an event check on every
        # reply and delivery of the run.
        while (  # noqa: ASYNC110
            self.recorder.in_flight > 0 or ledger.outstanding > 0
        ) and perf_counter() < deadline:
            await asyncio.sleep(0.05)
        if FAN_OUT_TYPES.intersection(self.plan.mix.types):
            await asyncio.sleep(DELIVERY_SETTLE_SECONDS)
        self.closing.set()

    async def _connection(self, index: int, open_at: float) -> None:
        await _sleep_until(open_at)
        plan, recorder = self.plan, self.recorder
        url_index = index % len(plan.urls)
        recorder.connections_attempted += 1
        url, source = plan.urls[url_index], plan.source(index)
        try:
            sock = None if source is None else await _socket_from(url, source, plan.connect_timeout)
            ws = await _open(url, plan.token, plan.connect_timeout, sock)
        except Exception as exc:  # any failure is a counted, classified connection error
            recorder.connection_errors[connect_error_kind(exc)] += 1
            return
        try:
            welcome = orjson.loads(
                await asyncio.wait_for(ws.recv(decode=False), plan.connect_timeout)
            )
            is_welcome = isinstance(welcome, dict) and welcome.get("type") == "welcome"
            worker = welcome.get("worker") if is_welcome else None
        except orjson.JSONDecodeError:
            worker = None
        except ConnectionClosed as exc:  # e.g. 1013: the worker is at capacity
            recorder.connection_errors[close_kind(exc)] += 1
            return
        except TimeoutError:
            recorder.connection_errors["no_welcome"] += 1
            await ws.close()
            return
        if not isinstance(worker, int):
            recorder.connection_errors["bad_welcome"] += 1
            await ws.close()
            return
        key = f"w{worker}" if len(plan.urls) == 1 else f"{url_index}/w{worker}"
        recorder.workers[key] += 1
        recorder.connections_open += 1
        rng = random.Random(f"{plan.seed}:{index}")
        await Session(self, index, ws, rng).serve()
