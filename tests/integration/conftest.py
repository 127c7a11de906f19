"""Integration fixtures: the real `wsmon serve` as a process, WebSocket clients, /metrics scrapes.

Every test here talks to a server started exactly as an operator would start it
(`wsmon serve --host 127.0.0.1 --port 0 --workers 2 ...`): a supervisor that owns the port and two
worker processes. Clients use the `websockets` library (as loadgen does), never aiohttp, so the
server is checked against an independent WebSocket implementation.

The process, /metrics parsing and polling come from tests/support (shared with the other test
folders); the WebSocket clients are integration-only. Helpers reach the tests through fixtures
(`module_wsmon`, `wsmon`) and the objects they return (`WsmonServer.connect`,
`WsmonServer.scrape`, ...), so no test module imports conftest at run time.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from support.metrics import Metrics
from support.polling import eventually
from support.processes import Wsmon, pid_exists
from support.redis import redis_server
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

# A fixture from the support modules, offered to the tests here.
__all__ = ["redis_server"]

RECV_TIMEOUT = 5.0  # one frame; generous for a 2-core machine running 3 Python processes

Frame = dict[str, Any]


# -- WebSocket clients -----------------------------------------------------------------------------

_ids = itertools.count(1)
_opened: list[Client] = []  # every client of the current test, closed after it


def next_id(prefix: str = "m") -> str:
    """A message id unique in the test run, so replies can never be confused."""
    return f"{prefix}-{next(_ids)}"


class Client:
    """A /ws client with a stash: frames read while waiting for something else are kept in order.

    `sent` counts the client message types this client sent, so tests can compare the server's
    counters with what really went over the wire.
    """

    def __init__(self, conn: ClientConnection, welcome: Frame | None) -> None:
        self.conn = conn
        self.welcome = welcome
        self.stash: list[Frame] = []
        self.sent: Counter[str] = Counter()
        self.bytes_sent = 0  # WebSocket payload bytes, as wsmon_message_bytes_total counts them
        self.bytes_received = 0

    @property
    def connection_id(self) -> str:
        assert self.welcome is not None, "this client never got a welcome frame"
        return str(self.welcome["connection_id"])

    @property
    def worker(self) -> int:
        assert self.welcome is not None, "this client never got a welcome frame"
        return int(self.welcome["worker"])

    async def send(self, message: Frame) -> None:
        self.sent[str(message.get("type"))] += 1
        await self.send_raw(json.dumps(message))

    async def send_raw(self, data: str | bytes) -> None:
        self.bytes_sent += len(data.encode() if isinstance(data, str) else data)
        await self.conn.send(data)

    async def recv_raw(self, within: float = RECV_TIMEOUT) -> str | bytes:
        data = await asyncio.wait_for(self.conn.recv(), within)
        self.bytes_received += len(data.encode() if isinstance(data, str) else data)
        return data

    async def recv(self, within: float = RECV_TIMEOUT) -> Frame:
        raw = await self.recv_raw(within)
        assert isinstance(raw, str), f"/ws sent a binary frame: {raw!r}"
        frame = json.loads(raw)
        assert isinstance(frame, dict), f"/ws sent a non-object: {raw!r}"
        return frame

    async def take(self, match: Callable[[Frame], bool], within: float = RECV_TIMEOUT) -> Frame:
        """The first frame (stashed or new) that matches; others read meanwhile are stashed."""
        for index, frame in enumerate(self.stash):
            if match(frame):
                return self.stash.pop(index)
        deadline = time.monotonic() + within
        while True:
            remaining = deadline - time.monotonic()
            try:
                frame = await self.recv(max(remaining, 0.001))
            except TimeoutError:
                pytest.fail(
                    f"client {self.welcome}: no matching frame within {within}s; "
                    f"unclaimed frames: {self.stash!r}"
                )
            if match(frame):
                return frame
            self.stash.append(frame)

    async def request(self, message: Frame, within: float = RECV_TIMEOUT) -> Frame:
        """Send `message` with a fresh id; return the frame answering it (ack/pong/echo/error)."""
        ref = message.setdefault("id", next_id(str(message.get("type"))))
        await self.send(message)
        return await self.take(lambda f: f.get("id") == ref or f.get("ref") == ref, within)

    async def delivery(self, message_type: str, **fields: Any) -> Frame:
        """The next delivery of `message_type` whose fields include `fields`."""

        def match(frame: Frame) -> bool:
            return frame.get("type") == message_type and all(
                frame.get(k) == v for k, v in fields.items()
            )

        return await self.take(match)

    async def unclaimed(self) -> list[Frame]:
        """Everything received and not yet claimed, up to a ping/pong round trip (a barrier)."""
        pong = await self.request({"type": "ping"})
        assert pong["type"] == "pong", pong
        frames, self.stash = self.stash, []
        return frames

    async def recv_or_close(self, within: float = RECV_TIMEOUT) -> Frame | None:
        """The next frame, or None when the server closes the connection instead."""
        try:
            return await self.recv(within)
        except ConnectionClosed:
            return None

    async def closed(self, within: float = RECV_TIMEOUT) -> int | None:
        """Wait for the server to close the connection; the close code the client saw."""
        with contextlib.suppress(ConnectionClosed):
            while True:
                await asyncio.wait_for(self.conn.recv(), within)
        await asyncio.wait_for(self.conn.wait_closed(), within)
        return self.conn.close_code

    async def close(self) -> None:
        await self.conn.close()


# -- the server process --------------------------------------------------------------------------


class WsmonServer:
    """A running `wsmon serve` (support.processes.Wsmon) and the WebSocket/HTTP clients for it."""

    pid_exists = staticmethod(pid_exists)

    def __init__(self, flags: tuple[str, ...]) -> None:
        self.flags = flags
        self.service = service = Wsmon(*flags)
        self.pid, self.port, self.base_url = service.pid, service.port, service.base_url

    @property
    def log(self) -> str:
        return self.service.log

    def ws_url(self, path: str = "/ws") -> str:
        return self.service.ws_url(path)

    def worker_pids(self) -> dict[int, int]:
        """Worker index -> pid of the supervisor's live worker children."""
        return self.service.worker_pids()

    def signal(self, signum: int) -> None:
        self.service.signal(signum)

    def wait(self, timeout: float) -> int:
        return self.service.wait(timeout)

    def stop(self) -> int:
        """SIGTERM and wait; if the drain hangs, kill the supervisor and its workers by pid."""
        return self.service.stop()

    # -- talking to it ---------------------------------------------------------------------------

    async def connect(self, path: str = "/ws", *, welcome: bool = True) -> Client:
        """Open a WebSocket; on /ws, wait for the welcome frame unless `welcome` is False."""
        conn = await connect(
            self.ws_url(path),
            proxy=None,
            compression=None,
            ping_interval=None,
            open_timeout=RECV_TIMEOUT,
            close_timeout=RECV_TIMEOUT,
        )
        client = Client(conn, None)
        _opened.append(client)
        if welcome:
            client.welcome = await client.recv()
            assert client.welcome["type"] == "welcome", client.welcome
        return client

    async def connect_many(self, count: int) -> Pool:
        """`count` /ws clients, opened one after the other (each waits for its welcome)."""
        return Pool([await self.connect() for _ in range(count)])

    async def spread(self, per_worker: int, workers: int = 2) -> list[Pool]:
        """`per_worker` clients on each worker: one Pool per worker index, surplus ones closed."""
        wanted = [Pool() for _ in range(workers)]
        surplus = Pool()
        for _ in range(per_worker * workers * 4):
            if all(len(pool) == per_worker for pool in wanted):
                break
            client = await self.connect()
            home = wanted[client.worker]
            (home if len(home) < per_worker else surplus).append(client)
        await surplus.close()
        counts = [len(pool) for pool in wanted]
        assert counts == [per_worker] * workers, f"could not place clients on each worker: {counts}"
        return wanted

    async def get(self, path: str) -> tuple[int, str, str]:
        """GET `path`: (status, content type, body)."""
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session,
            session.get(self.base_url + path) as response,
        ):
            return response.status, response.headers.get("Content-Type", ""), await response.text()

    async def scrape(self) -> Metrics:
        status, _, body = await self.get("/metrics")
        assert status == 200, body
        return Metrics.parse(body)

    async def wait_active(self, expected: float, within: float = 5.0) -> Metrics:
        """Poll /metrics until the pool holds exactly `expected` connections."""
        return await eventually(
            self.scrape,
            lambda m: m.total("wsmon_connections_active") == expected,
            within=within,
            what=f"wsmon_connections_active summed == {expected}",
        )


class Pool(list[Client]):
    """Several clients, with the questions tests ask about them."""

    def counts(self) -> Counter[int]:
        """How many of these clients each worker holds (from their welcome frames)."""
        return Counter(client.worker for client in self)

    async def close(self) -> None:
        await asyncio.gather(*(client.close() for client in self))


# -- fixtures ------------------------------------------------------------------------------------


@dataclass
class ServerFactory:
    """Starts servers with extra flags (`factory("--worker-capacity", "2")`); stops them all."""

    started: list[WsmonServer] = field(default_factory=list)

    def __call__(self, *flags: str, workers: int = 2) -> WsmonServer:
        server = WsmonServer(("--workers", str(workers), *flags))
        self.started.append(server)
        return server

    def stop_all(self) -> None:
        for server in self.started:
            server.stop()


@pytest.fixture
def wsmon() -> Iterator[ServerFactory]:
    """A factory for servers that live for one test (restart, drain, capacity: they disturb)."""
    factory = ServerFactory()
    yield factory
    factory.stop_all()


@pytest.fixture(scope="module")
def module_wsmon() -> Iterator[ServerFactory]:
    """A factory for servers shared by the tests of one module."""
    factory = ServerFactory()
    yield factory
    factory.stop_all()


@pytest.fixture(scope="module")
def server(module_wsmon: ServerFactory) -> WsmonServer:
    """One default `wsmon serve --workers 2` per module."""
    return module_wsmon()


Eventually = Callable[..., Awaitable[Any]]


@pytest.fixture(name="eventually")
def eventually_fixture() -> Eventually:
    """`await eventually(check, accept, within=..., what=...)`: poll with a deadline."""
    return eventually


@pytest.fixture(autouse=True)
async def _close_clients() -> AsyncIterator[None]:
    """Close whatever clients a test left open, so the next test starts from an idle pool."""
    yield
    opened = list(_opened)
    _opened.clear()
    await asyncio.gather(*(client.close() for client in opened), return_exceptions=True)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Attach the log of every server a failed test used, so the failure explains itself."""
    report = yield
    if report.failed:
        servers: list[WsmonServer] = []
        for value in getattr(item, "funcargs", {}).values():
            if isinstance(value, WsmonServer):
                servers.append(value)
            elif isinstance(value, ServerFactory):
                servers.extend(value.started)
        for server in dict.fromkeys(servers):
            report.sections.append((f"wsmon log ({' '.join(server.flags)})", server.log[-20000:]))
    return report
