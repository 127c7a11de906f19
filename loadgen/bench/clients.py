"""Benchmark clients, one mode per measurement, each run as its own process.

    python -P -m wsmon.loadgen.bench.clients pingpong URL --connections 50 --duration 4
    python -P -m wsmon.loadgen.bench.clients open URL --connections 5000 --rate 1 --duration 10
    python -P -m wsmon.loadgen.bench.clients hold URL --connections 5000
    python -P -m wsmon.loadgen.bench.clients listen URL --connections 5000
    python -P -m wsmon.loadgen.bench.clients rooms A --other B --connections 20 --rate 10 --cross
    python -P -m wsmon.loadgen.bench.clients storm URL --connections 10000 [--sources 127.0.0.2,…]
    python -P -m wsmon.loadgen.bench.clients crowd URL --connections 12500 --sources 127.0.0.2 \
        --every 100 --rate 1 --duration 30

Each prints one JSON object on stdout when it is done (`hold` and `listen` first print a line
when every connection is open, then wait for SIGTERM; `rooms` prints one when it is ready, then
waits for SIGUSR1 to start chatting; `storm` likewise, then opens every connection at once;
`crowd` prints one when its connections are open, sends on SIGUSR1, reports, then holds them
until SIGTERM). They use aiohttp's client, the lightest at hand (`listen`, `storm` and `crowd`:
plain sockets), so the
client leaves as much of the two cores as possible to the server; the same client measures
every server. Times are `time.perf_counter()`: CLOCK_MONOTONIC, comparable across processes
on one host (uvloop's `loop.time()` has only millisecond resolution).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import errno
import gc
import os
import random
import select
import signal
import socket
import sys
import threading
from dataclasses import dataclass
from time import perf_counter
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import orjson
import uvloop
from hdrh.histogram import HdrHistogram  # type: ignore[import-untyped]

from ..client import bind_source
from ..stats import HIGHEST_US, LOWEST_US, SIGNIFICANT_DIGITS
from .procs import even_shares, rss_bytes

WELCOME_TIMEOUT = 10.0
GRACE_SECONDS = 5.0


def upgrade_request(url: str) -> tuple[str, int, bytes]:
    """The host, port and WebSocket upgrade request of `url`, for the raw-socket clients."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = (
        f"GET {parts.path or '/'} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
        f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n\r\n"
    ).encode()
    return host, port, request


def prepare(sock: socket.socket, source: str | None) -> None:
    """Make `sock` non-blocking and bind it to `source` (an address of 127.0.0.0/8) if given."""
    sock.setblocking(False)
    if source:
        bind_source(sock, source)


def histogram() -> Any:
    """Latencies in microseconds, with the load generator's bounds (loadgen.stats)."""
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)


def emit(result: dict[str, Any]) -> None:
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    sys.stdout.flush()


async def connect(session: aiohttp.ClientSession, url: str, workers: list[int] | None) -> Any:
    """Open one connection; wsmon greets with a welcome (its worker is noted), bare ones don't."""
    ws = await session.ws_connect(url, compress=0, autoping=True, max_msg_size=0)
    if workers is not None:
        welcome = orjson.loads((await ws.receive(timeout=WELCOME_TIMEOUT)).data)
        workers.append(welcome["worker"])
    return ws


async def open_all(
    session: aiohttp.ClientSession, url: str, count: int, workers: list[int] | None
) -> tuple[list[Any], int, float]:
    """Open `count` connections, 200 at a time; returns them, the failures and the seconds taken.
    Several URLs, comma-separated, share the connections out evenly (bare aiohttp as two
    processes on two ports, balanced as wsmon's supervisor balances its workers)."""
    started = perf_counter()
    sockets: list[Any] = []
    failed = 0
    urls = url.split(",")
    for target, share in zip(urls, even_shares(count, len(urls)), strict=True):
        for first in range(0, share, 200):
            batch = await asyncio.gather(
                *(connect(session, target, workers) for _ in range(min(200, share - first))),
                return_exceptions=True,
            )
            for item in batch:
                if isinstance(item, BaseException):
                    failed += 1
                else:
                    sockets.append(item)
    return sockets, failed, perf_counter() - started


def quiet_collector() -> None:
    """The client is the measuring instrument: a full garbage collection over thousands of
    connections would stall it for tens of milliseconds and be blamed on the server."""
    gc.collect()
    gc.freeze()


def session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, force_close=True))


async def pingpong(url: str, connections: int, duration: float, welcome: bool) -> None:
    """Closed loop: each connection sends the next echo as soon as the last one came back."""
    message = '{"type":"echo","id":1,"payload":"the quick brown fox jumps"}'
    counts = [0]
    workers: list[int] | None = [] if welcome else None
    async with session() as client:
        sockets, failed, _ = await open_all(client, url, connections, workers)
        stop_at = perf_counter() + duration

        async def loop(ws: Any) -> None:
            while perf_counter() < stop_at:
                await ws.send_str(message)
                await ws.receive()
                counts[0] += 1

        started = perf_counter()
        await asyncio.gather(*(loop(ws) for ws in sockets))
        elapsed = perf_counter() - started
        await asyncio.gather(*(ws.close() for ws in sockets))
    emit(
        {
            "messages": counts[0],
            "seconds": elapsed,
            "failed_connections": failed,
            "workers": workers,
        }
    )


async def open_model(
    url: str, connections: int, rate: float, duration: float, seed: int, welcome: bool
) -> None:
    """Each connection sends on its own fixed schedule; latency counts from the scheduled time."""
    interval = 1.0 / rate
    latencies = histogram()
    counts = {"sent": 0, "answered": 0}
    workers: list[int] | None = [] if welcome else None
    rng = random.Random(seed)
    async with session() as client:
        sockets, failed, connect_seconds = await open_all(client, url, connections, workers)
        quiet_collector()
        begin = perf_counter() + 0.5
        stop_at = begin + duration

        async def run(ws: Any) -> None:
            scheduled: dict[int, float] = {}
            answered_all = asyncio.Event()
            sending = True

            async def receive() -> None:
                async for msg in ws:
                    if msg.type is not aiohttp.WSMsgType.TEXT:
                        continue
                    sent_at = scheduled.pop(orjson.loads(msg.data).get("id"), None)
                    if sent_at is not None:
                        latencies.record_value(max(1, int((perf_counter() - sent_at) * 1e6)))
                        counts["answered"] += 1
                        if not sending and not scheduled:
                            answered_all.set()

            reader = asyncio.create_task(receive())
            due, sequence = begin + rng.random() * interval, 0
            while due < stop_at:
                delay = due - perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                scheduled[sequence] = due
                await ws.send_str(f'{{"type":"echo","id":{sequence}}}')
                counts["sent"] += 1
                sequence += 1
                due += interval
            sending = False
            if scheduled:  # a reply still missing after the grace period is a failure
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(answered_all.wait(), GRACE_SECONDS)
            reader.cancel()

        await asyncio.gather(*(run(ws) for ws in sockets), return_exceptions=True)
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    emit(
        {
            "connections": len(sockets),
            "failed_connections": failed,
            "connect_seconds": connect_seconds,
            "sent": counts["sent"],
            "answered": counts["answered"],
            "histogram": latencies.encode().decode(),
            "workers": workers,
        }
    )


async def hold(url: str, connections: int, welcome: bool) -> None:
    """Open connections and keep them idle until SIGTERM."""
    workers: list[int] | None = [] if welcome else None
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with session() as client:
        sockets, failed, connect_seconds = await open_all(client, url, connections, workers)
        emit(
            {
                "ready": len(sockets),
                "failed_connections": failed,
                "connect_seconds": connect_seconds,
                "workers": workers,
            }
        )

        await stop.wait()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(
                asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True), 10
            )
    emit({"closed": len(sockets)})


def listen(url: str, connections: int) -> None:
    """Hold connections on plain sockets and time every broadcast's arrival on each of them.

    A broadcast to 10,000 connections makes the clients parse 10,000 frames at once; through
    aiohttp that costs the clients more CPU than the server's fan-out, and on two cores they would
    compete with it. Here a frame costs one recv, a header decode and one orjson.loads.

    A connection the server closes is dropped (and counted in `closed_by_server`); the others
    keep listening. A server that closes before its handshake answer ends the client (exit 1).
    """
    host, port, request = upgrade_request(url)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    poller = select.epoll()
    buffers: dict[int, bytearray] = {}
    sockets: dict[int, socket.socket] = {}
    started = perf_counter()
    for number in range(1, connections + 1):
        sock = socket.create_connection((host, port), timeout=10)
        sock.sendall(request)
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = sock.recv(4096)
            if not chunk:
                sock.close()
                raise SystemExit(
                    f"handshake failed: {host}:{port} closed connection {number} of {connections}"
                    f" after {len(response)} bytes of its answer: {response[:80]!r}"
                )
            response += chunk
        head, _, rest = response.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise SystemExit(f"handshake refused: {head[:80]!r}")
        sock.setblocking(False)
        sockets[sock.fileno()] = sock
        buffers[sock.fileno()] = bytearray(rest)
        poller.register(sock.fileno(), select.EPOLLIN)
    connect_seconds = perf_counter() - started
    # Before the ready line, not after: the bench measures the moment every client is ready, and
    # two clients collecting then took CPU from the server's first /metrics scrapes
    # (docs/performance.md, fifth round).
    quiet_collector()
    emit(
        {
            "ready": len(sockets),
            "failed_connections": 0,
            "connect_seconds": connect_seconds,
            "workers": None,
        }
    )
    arrivals: dict[int, list[float]] = {}
    closed_by_server = 0
    while not stop.is_set():
        for fd, _ in poller.poll(0.1):
            now = perf_counter()
            try:
                data = sockets[fd].recv(65536)
            except BlockingIOError:
                continue
            except ConnectionError:
                data = b""
            if not data:  # the server closed it: a closed socket stays readable, so drop it
                poller.unregister(fd)
                sockets.pop(fd).close()
                del buffers[fd]
                closed_by_server += 1
                continue
            buffer = buffers[fd]
            buffer += data
            for payload in _frames(buffer):
                carried = orjson.loads(payload).get("payload")
                if isinstance(carried, dict) and "t" in carried:
                    arrivals.setdefault(carried["n"], []).append(now - carried["t"])
    for sock in sockets.values():
        sock.close()
    poller.close()
    emit(
        {
            "arrivals": {str(n): values for n, values in arrivals.items()},
            "closed_by_server": closed_by_server,
        }
    )


class Handshake(asyncio.Protocol):
    """One storm connection: sends the upgrade request at once, notes when the 101 arrives and,
    from wsmon, its welcome (and the worker it names)."""

    def __init__(self, request: bytes, welcome: bool, done: asyncio.Future[str]) -> None:
        self.request, self.welcome, self.done = request, welcome, done
        self.buffer = bytearray()
        self.upgraded: float | None = None
        self.worker: int | None = None

    def connection_made(self, transport: Any) -> None:  # uvloop's is no asyncio.Transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if self.done.done():
            return
        self.buffer += data
        if self.upgraded is None:
            head, found, rest = bytes(self.buffer).partition(b"\r\n\r\n")
            if not found:
                return
            if not head.startswith(b"HTTP/1.1 101"):
                self.done.set_result(f"status {head[9:12].decode(errors='replace')}")
                return
            self.upgraded = perf_counter()
            self.buffer = bytearray(rest)
            if not self.welcome:
                self.done.set_result("ok")
                return
        payloads = _frames(self.buffer)
        if payloads:
            self.worker = orjson.loads(payloads[0]).get("worker")
            self.done.set_result("ok")

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(
                "closed before the handshake"
                if self.upgraded is None
                else "closed before the welcome"
            )


async def storm(
    url: str, connections: int, welcome: bool, sources: list[str], seconds: float
) -> None:
    """A reconnect storm: every connection at once. Prints a ready line, waits for SIGUSR1, then
    opens all `connections` together (from `sources` in turn, when given: source addresses on
    127.0.0.0/8), each timed from its connect call to the 101 (`handshake`) and, from wsmon, to
    its welcome (`admitted`; for a bare server the 101). Failures are counted by what the client
    saw. The result line comes once every connection is admitted or has failed (or `seconds`);
    the connections are held until SIGTERM."""
    host, port, request = upgrade_request(url)
    loop = asyncio.get_running_loop()
    go, stop = asyncio.Event(), asyncio.Event()
    loop.add_signal_handler(signal.SIGUSR1, go.set)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    emit({"ready": connections})
    quiet_collector()
    await go.wait()
    handshakes, admissions = histogram(), histogram()
    failures: dict[str, int] = {}
    workers: list[int] = []
    transports: list[Any] = []
    last = [0.0]

    async def one(number: int) -> None:
        started = perf_counter()
        done: asyncio.Future[str] = loop.create_future()
        protocol = Handshake(request, welcome, done)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            prepare(sock, sources[number % len(sources)] if sources else None)
            await asyncio.wait_for(loop.sock_connect(sock, (host, port)), seconds)
            transport, _ = await loop.create_connection(lambda: protocol, sock=sock)
            transports.append(transport)
            outcome = await asyncio.wait_for(done, max(0.001, started + seconds - perf_counter()))
        except TimeoutError:
            outcome = "timed out"
        except OSError as exc:
            outcome = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
        if outcome != "ok":
            sock.close()
            failures[outcome] = failures.get(outcome, 0) + 1
            return
        now = perf_counter()
        last[0] = max(last[0], now)
        assert protocol.upgraded is not None
        handshakes.record_value(max(1, int((protocol.upgraded - started) * 1e6)))
        admissions.record_value(max(1, int((now - started) * 1e6)))
        if protocol.worker is not None:
            workers.append(protocol.worker)

    began = perf_counter()
    await asyncio.gather(*(one(number) for number in range(connections)))
    emit(
        {
            "admitted": admissions.get_total_count(),
            "failures": failures,
            "began": began,
            "last_admitted": last[0] or None,
            "handshake": handshakes.encode().decode(),
            "admission": admissions.encode().decode(),
            "workers": workers if welcome else None,
        }
    )
    await stop.wait()
    for transport in transports:
        transport.abort()


def resident_bytes() -> int:
    return rss_bytes([os.getpid()])


class Member(asyncio.Protocol):
    """One crowd connection on a raw socket. Until `opened` is settled it reads the 101 (and
    wsmon's welcome); after that every frame is an echo reply for the crowd to time. Slots:
    a hundred thousand of these make up the client's memory per connection."""

    __slots__ = ("buffer", "crowd", "opened", "transport", "upgraded")

    def __init__(self, crowd: Crowd, opened: asyncio.Future[str]) -> None:
        self.crowd, self.opened = crowd, opened
        self.buffer = bytearray()
        self.upgraded = False
        self.transport: Any = None

    def connection_made(self, transport: Any) -> None:  # uvloop's is no asyncio.Transport
        self.transport = transport
        transport.write(self.crowd.request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.upgraded:
            head, found, rest = bytes(self.buffer).partition(b"\r\n\r\n")
            if not found:
                return
            if not head.startswith(b"HTTP/1.1 101"):
                self.opened.set_result(f"status {head[9:12].decode(errors='replace')}")
                self.transport.abort()
                return
            self.upgraded = True
            self.buffer = bytearray(rest)
            if not self.crowd.welcome:
                self.opened.set_result("ok")
        for payload in _frames(self.buffer):
            if not self.opened.done():  # wsmon's welcome, naming the worker
                self.crowd.workers.append(orjson.loads(payload).get("worker", -1))
                self.opened.set_result("ok")
            else:
                self.crowd.reply(payload)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_result(
                "closed before the handshake" if not self.upgraded else "closed before the welcome"
            )
        elif self.opened.result() == "ok":  # a refused one was closed by its own abort
            self.crowd.closed_by_server += 1


class Crowd:
    """Many idle connections, of which every `every`-th sends echoes on a fixed schedule."""

    def __init__(self, url: str, welcome: bool) -> None:
        self.host, self.port, self.request = upgrade_request(url)
        self.welcome = welcome
        self.workers: list[int] = []
        self.members: list[Member] = []
        self.failures: dict[str, int] = {}
        self.closed_by_server = 0
        self.scheduled: dict[int, float] = {}
        self.latencies = histogram()
        self.sent = self.answered = 0
        self.sending = True
        self.all_answered = asyncio.Event()

    def reply(self, payload: bytes) -> None:
        sent_at = self.scheduled.pop(orjson.loads(payload).get("id"), None)
        if sent_at is not None:
            self.latencies.record_value(max(1, int((perf_counter() - sent_at) * 1e6)))
            self.answered += 1
            if not self.sending and not self.scheduled:
                self.all_answered.set()

    async def open(self, source: str | None) -> None:
        loop = asyncio.get_running_loop()
        opened: asyncio.Future[str] = loop.create_future()
        member = Member(self, opened)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            prepare(sock, source)
            async with asyncio.timeout(WELCOME_TIMEOUT):
                await loop.sock_connect(sock, (self.host, self.port))
                await loop.create_connection(lambda: member, sock=sock)
                outcome = await opened
        except TimeoutError:
            outcome = "timed out"
        except OSError as exc:
            outcome = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
        if outcome == "ok":
            self.members.append(member)
            return
        if member.transport is not None:
            member.transport.abort()
        sock.close()
        self.failures[outcome] = self.failures.get(outcome, 0) + 1

    async def send(self, member: Member, first: float, interval: float, stop_at: float) -> None:
        due = first
        while due < stop_at:
            delay = due - perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if member.transport.is_closing():
                return
            number = self.sent
            self.sent += 1
            self.scheduled[number] = due
            text = f'{{"type":"echo","id":{number}}}'.encode()
            # A client frame is masked; a zero key leaves the payload as it is (RFC 6455 5.3).
            member.transport.write(bytes((0x81, 0x80 | len(text))) + b"\0\0\0\0" + text)
            due += interval


@dataclass(frozen=True)
class CrowdPlan:
    """What `crowd` opens and sends: `connections` from `sources` in turn, `in_flight` at a
    time; every `every`-th sends `rate` echoes a second for `duration` s."""

    connections: int
    sources: list[str]
    every: int
    rate: float
    duration: float
    in_flight: int


async def crowd(url: str, welcome: bool, plan: CrowdPlan) -> None:
    """Issue 14, item 1: open half of the plan's connections, print a halfway line and wait for
    SIGUSR1 (the server is measured there, so that what the second half costs is the cost of a
    connection alone), open the rest and print a ready line with this process's memory per
    connection. On the next SIGUSR1 the plan's senders send on a fixed schedule, each echo
    timed from its scheduled moment to its reply; print the result, and hold every connection
    until SIGTERM."""
    loop = asyncio.get_running_loop()
    go = asyncio.Event()
    loop.add_signal_handler(signal.SIGUSR1, go.set)
    # SIGTERM, at any step: every connection is closed and the client exits.
    body = asyncio.current_task()
    assert body is not None
    loop.add_signal_handler(signal.SIGTERM, body.cancel)
    crowd = Crowd(url, welcome)
    try:
        await crowd_steps(crowd, go, plan)
        await asyncio.Event().wait()  # hold the connections until SIGTERM
    except asyncio.CancelledError:
        pass
    for member in crowd.members:
        member.transport.abort()
    emit({"closed": len(crowd.members)})


async def crowd_steps(crowd: Crowd, go: asyncio.Event, plan: CrowdPlan) -> None:
    connections, sources = plan.connections, plan.sources
    rss_before = resident_bytes()
    gate = asyncio.Semaphore(plan.in_flight)

    async def one(number: int) -> None:
        async with gate:
            await crowd.open(sources[number % len(sources)] if sources else None)

    half = connections // 2
    opening = 0.0  # seconds spent opening, the pause at halfway left out
    for first, last in ((0, half), (half, connections)):
        if first:
            emit({"halfway": len(crowd.members)})
            await go.wait()
            go.clear()
        started = perf_counter()
        await asyncio.gather(*(one(number) for number in range(first, last)))
        opening += perf_counter() - started
    quiet_collector()
    ready = len(crowd.members)
    emit(
        {
            "ready": ready,
            "failures": crowd.failures,
            "connect_seconds": opening,
            "client_bytes_per_connection": (resident_bytes() - rss_before) / max(ready, 1),
            "workers": crowd.workers if crowd.welcome else None,
        }
    )
    await go.wait()
    interval = 1.0 / plan.rate
    begin = perf_counter() + 0.2
    stop_at = begin + plan.duration
    rng = random.Random(1)
    senders = crowd.members[:: plan.every]
    await asyncio.gather(
        *(crowd.send(m, begin + rng.random() * interval, interval, stop_at) for m in senders)
    )
    crowd.sending = False
    if crowd.scheduled:  # a reply still missing after the grace period is a failure
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(crowd.all_answered.wait(), GRACE_SECONDS)
    emit(
        {
            "senders": len(senders),
            "sent": crowd.sent,
            "answered": crowd.answered,
            "histogram": crowd.latencies.encode().decode(),
            "closed_by_server": crowd.closed_by_server,
        }
    )


CHAT_TEXT = "the quick brown fox jumps over the lazy dog"
SAME_WORKER, OTHER_WORKER, CROSS = "same worker", "other worker", "other instance"


async def connect_noting(client: aiohttp.ClientSession, url: str) -> tuple[Any, int]:
    """One wsmon connection and the worker its welcome names."""
    ws = await client.ws_connect(url, compress=0, autoping=True, max_msg_size=0)
    welcome = orjson.loads((await ws.receive(timeout=WELCOME_TIMEOUT)).data)
    return ws, welcome["worker"]


async def connect_many(
    client: aiohttp.ClientSession, url: str, count: int
) -> list[tuple[Any, int]]:
    opened: list[tuple[Any, int]] = []
    for first in range(0, count, 200):
        opened += await asyncio.gather(
            *(connect_noting(client, url) for _ in range(min(200, count - first)))
        )
    return opened


def dealt(opened: list[tuple[Any, int]], rooms: int, members: int) -> list[list[tuple[Any, int]]]:
    """`members` connections for each room, taken from the workers in turn, so that a room's
    members sit on different workers where there are enough of them."""
    by_worker: dict[int, list[tuple[Any, int]]] = {}
    for item in opened:
        by_worker.setdefault(item[1], []).append(item)
    queues = [by_worker[worker] for worker in sorted(by_worker)]
    ordered: list[tuple[Any, int]] = []
    while any(queues):
        for queue in queues:
            if queue:
                ordered.append(queue.pop(0))
    return [ordered[room * members : (room + 1) * members] for room in range(rooms)]


async def join(ws: Any, room: str) -> None:
    await ws.send_str(orjson.dumps({"type": "join", "id": "join", "room": room}).decode())
    while True:
        reply = orjson.loads((await ws.receive(timeout=WELCOME_TIMEOUT)).data)
        if reply.get("type") == "ack":
            return
        if reply.get("type") == "error":
            raise RuntimeError(f"join {room}: {reply}")


async def rooms(
    url: str,
    other: str,
    count: int,
    members: int,
    rate: float,
    duration: float,
    seed: int,
    cross: bool,
) -> None:
    """Chat rooms with members on two wsmon instances: `count` rooms, each with one sender and
    `members` members on `url` (instance A) and `members` members on `other` (instance B).

    Every sender chats `rate` times a second on a fixed schedule once the client is told to go
    (SIGUSR1, after the ready line), with the time of sending (perf_counter) in the message; each
    member's arrival is one latency sample on the same clock, classed by path: on the sender's
    worker, on A's other worker (through A's supervisor), or on B (through A's supervisor, the
    broker and B's supervisor; expected only with `cross`). The result line comes once every
    expected delivery has arrived (or GRACE_SECONDS after the last send), before the connections
    close."""
    go = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGUSR1, go.set)
    latencies = {path: histogram() for path in (SAME_WORKER, OTHER_WORKER, CROSS)}
    arrived = {path: 0 for path in latencies}
    counts = {"sent": 0, "acked": 0, "expected": 0, "received": 0, "unexpected": 0}
    everything = asyncio.Event()
    sending = [True]
    rng = random.Random(seed)
    names = [f"bench-room-{number}" for number in range(count)]
    async with session() as client:
        senders = await connect_many(client, url, count)
        on_a = dealt(await connect_many(client, url, count * members), count, members)
        on_b = dealt(await connect_many(client, other, count * members), count, members)
        joins = [join(ws, names[room]) for room, (ws, _) in enumerate(senders)]
        for room in range(count):
            joins += [join(ws, names[room]) for ws, _ in on_a[room] + on_b[room]]
        await asyncio.gather(*joins)
        quiet_collector()

        def check_done() -> None:
            if not sending[0] and counts["received"] >= counts["expected"]:
                everything.set()

        async def member(ws: Any, path: str) -> None:
            async for msg in ws:
                if msg.type is not aiohttp.WSMsgType.TEXT:
                    continue
                now = perf_counter()
                obj = orjson.loads(msg.data)
                if obj.get("type") != "chat":
                    continue
                kind = path
                if kind == CROSS and not cross:
                    counts["unexpected"] += 1
                    continue
                latencies[kind].record_value(max(1, int((now - obj["t"]) * 1e6)))
                arrived[kind] += 1
                counts["received"] += 1
                check_done()

        async def acks(ws: Any) -> None:
            async for msg in ws:
                if msg.type is aiohttp.WSMsgType.TEXT and '"ack"' in msg.data:
                    counts["acked"] += 1

        readers = [asyncio.create_task(acks(ws)) for ws, _ in senders]
        for room in range(count):
            for ws, worker in on_a[room]:
                path = SAME_WORKER if worker == senders[room][1] else OTHER_WORKER
                readers.append(asyncio.create_task(member(ws, path)))
            readers += [asyncio.create_task(member(ws, CROSS)) for ws, _ in on_b[room]]
        workers = {
            "senders": [worker for _, worker in senders],
            "a": [worker for group in on_a for _, worker in group],
            "b": [worker for group in on_b for _, worker in group],
        }
        emit({"ready": count * (1 + 2 * members), "workers": workers})
        await go.wait()
        interval = 1.0 / rate
        begin = perf_counter() + 0.05
        stop_at = begin + duration
        per_message = members + (members if cross else 0)

        async def chat(room: int) -> None:
            ws = senders[room][0]
            due, sequence = begin + rng.random() * interval, 0
            while due < stop_at:
                delay = due - perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                counts["expected"] += per_message
                message = {
                    "type": "chat",
                    "id": sequence,
                    "room": names[room],
                    "text": CHAT_TEXT,
                    "n": sequence,
                    "t": perf_counter(),
                }
                await ws.send_str(orjson.dumps(message).decode())
                counts["sent"] += 1
                sequence += 1
                due += interval

        started = perf_counter()
        await asyncio.gather(*(chat(room) for room in range(count)))
        elapsed = perf_counter() - started
        sending[0] = False
        check_done()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(everything.wait(), GRACE_SECONDS)
        emit(
            {
                **counts,
                "seconds": elapsed,
                "arrived": arrived,
                "histograms": {path: h.encode().decode() for path, h in latencies.items()},
                "workers": workers,
            }
        )
        for reader in readers:
            reader.cancel()
        everyone = [ws for ws, _ in senders] + [
            ws for groups in (on_a, on_b) for group in groups for ws, _ in group
        ]
        await asyncio.gather(*(ws.close() for ws in everyone), return_exceptions=True)


def _frames(buffer: bytearray) -> list[bytes]:
    """Take the complete (unmasked, server-to-client) frames' payloads off the buffer's front."""
    payloads = []
    while len(buffer) >= 2:
        length, offset = buffer[1] & 0x7F, 2
        if length == 126:
            length, offset = int.from_bytes(buffer[2:4]), 4
        elif length == 127:
            length, offset = int.from_bytes(buffer[2:10]), 10
        if len(buffer) < offset + length:
            break
        payloads.append(bytes(buffer[offset : offset + length]))
        del buffer[: offset + length]
    return payloads


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "mode", choices=("pingpong", "open", "hold", "listen", "rooms", "storm", "crowd")
    )
    parser.add_argument(
        "url",
        help="pingpong, open, hold: several, comma-separated, share the connections out evenly",
    )
    parser.add_argument("--connections", type=int, required=True)
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--rate", type=float, default=1.0, help="messages/s per connection")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--wsmon", action="store_true", help="expect a welcome frame first")
    parser.add_argument("--other", help="rooms: the second instance's URL")
    parser.add_argument("--members", type=int, default=2, help="rooms: members per instance")
    parser.add_argument("--cross", action="store_true", help="rooms: the instances share a broker")
    parser.add_argument(
        "--sources", default="", help="storm, crowd: source addresses to bind, comma-separated"
    )
    parser.add_argument("--every", type=int, default=100, help="crowd: 1 in this many sends")
    parser.add_argument("--in-flight", type=int, default=200, help="crowd: handshakes at a time")
    parser.add_argument("--timeout", type=float, default=60.0, help="storm: seconds at most")
    args = parser.parse_args()
    sources = [address for address in args.sources.split(",") if address]
    if args.mode == "storm":
        uvloop.run(storm(args.url, args.connections, args.wsmon, sources, args.timeout))
    elif args.mode == "crowd":
        plan = CrowdPlan(
            args.connections, sources, args.every, args.rate, args.duration, args.in_flight
        )
        uvloop.run(crowd(args.url, args.wsmon, plan))
    elif args.mode == "pingpong":
        uvloop.run(pingpong(args.url, args.connections, args.duration, args.wsmon))
    elif args.mode == "open":
        uvloop.run(
            open_model(args.url, args.connections, args.rate, args.duration, args.seed, args.wsmon)
        )
    elif args.mode == "rooms":
        uvloop.run(
            rooms(
                args.url,
                args.other or args.url,
                args.connections,
                args.members,
                args.rate,
                args.duration,
                args.seed,
                args.cross,
            )
        )
    elif args.mode == "hold":
        uvloop.run(hold(args.url, args.connections, args.wsmon))
    else:
        listen(args.url, args.connections)


if __name__ == "__main__":
    main()
