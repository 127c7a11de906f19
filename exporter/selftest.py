"""The Testing tab's three checks of a running server, as a client sees it through its public port.

- server: the WebSocket handshake, the welcome frame, a ping answered by a pong; each step timed.
- pool: enough connections at once to reach every worker (the welcome names the worker); the
  distribution over the workers, and its spread (most / fewest); a worker with none fails.
- echo: round trips of `echo` messages of a given size through /ws, the protocol's own path;
  min / avg / p50 / p99 / max.

`wsmon test` runs them from anywhere; /probe runs them from inside the server against itself, for
Prometheus. Built on aiohttp's client, which the server already depends on. A check that could
not reach the server at all (refused, unresolvable, unroutable) says so apart from one that ran
and failed: `wsmon test` exits 2 for the first, 1 for the second.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp
import orjson

DEFAULT_STEP_TIMEOUT: Final = 5.0
DEFAULT_ECHO_COUNT: Final = 20
DEFAULT_ECHO_BYTES: Final = 64
# Connections per worker in the pool check: several, so the least-loaded hand-off has a choice
# and the spread means something.
DEFAULT_PER_WORKER: Final = 4
DEFAULT_MAX_SPREAD: Final = 2.0
TRY_AGAIN_LATER: Final = 1013
# A whole check may take this many of its steps' time (each step waits step_timeout at most).
STEPS_PER_CHECK: Final = 4


class Unreachable(Exception):
    """The server could not be reached at all: the check did not run."""


class Failed(Exception):
    """The server answered, but not as the protocol says: the check failed."""


@dataclass(frozen=True)
class Step:
    name: str
    seconds: float


@dataclass
class Result:
    """One check's outcome: passed or not, why not, and its figures."""

    probe: str
    url: str
    success: bool = False
    reachable: bool = True
    seconds: float = 0.0
    error: str | None = None
    steps: list[Step] = field(default_factory=list)
    # echo: min, avg, p50, p99, max round trip (seconds); pool: spread.
    figures: dict[str, float] = field(default_factory=dict)
    # pool: connections per worker index (every expected worker listed, 0 included).
    workers: dict[int, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "probe": self.probe,
            "url": self.url,
            "success": self.success,
            "reachable": self.reachable,
            "seconds": self.seconds,
            "error": self.error,
            "steps": {step.name: step.seconds for step in self.steps},
            "figures": self.figures,
            "workers": {str(k): v for k, v in sorted(self.workers.items())},
        }


def describe(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


async def _connect(
    session: aiohttp.ClientSession,
    url: str,
    step_timeout: float,
    headers: Mapping[str, str] | None = None,
) -> aiohttp.ClientWebSocketResponse:
    try:
        # The handshake under its own deadline: a worker that is stopped (not dead) holds the
        # connection it was handed without ever answering.
        async with asyncio.timeout(step_timeout):
            return await session.ws_connect(
                url,
                timeout=aiohttp.ClientWSTimeout(ws_receive=step_timeout, ws_close=step_timeout),
                autoping=True,
                max_msg_size=0,
                headers=headers,
            )
    except TimeoutError:
        raise Failed(f"no handshake within {step_timeout:g} s") from None
    except aiohttp.ClientConnectorError as exc:  # refused, unresolvable, unroutable
        raise Unreachable(f"cannot connect to {url}: {exc.os_error or exc}") from None
    except aiohttp.WSServerHandshakeError as exc:
        raise Failed(f"handshake refused: HTTP {exc.status} {exc.message}") from None


async def _receive(ws: aiohttp.ClientWebSocketResponse, step_timeout: float, what: str) -> Any:
    """The next text frame as JSON; a close (1013: at capacity) or silence fails the check."""
    try:
        message = await ws.receive(timeout=step_timeout)
    except TimeoutError:
        raise Failed(f"no {what} within {step_timeout:g} s") from None
    if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED):
        code = ws.close_code
        if code == TRY_AGAIN_LATER:
            raise Failed(f"the server is at capacity: closed with {code} before the {what}")
        raise Failed(f"the server closed the connection ({code}) before the {what}")
    if message.type is not aiohttp.WSMsgType.TEXT:
        raise Failed(f"expected the {what} as a text frame, got {message.type.name}")
    try:
        return orjson.loads(message.data)
    except orjson.JSONDecodeError:
        raise Failed(f"the {what} is not JSON: {message.data[:80]!r}") from None


async def _welcome(ws: aiohttp.ClientWebSocketResponse, step_timeout: float) -> int:
    """The worker index of a welcome frame."""
    frame = await _receive(ws, step_timeout, "welcome")
    worker = frame.get("worker") if isinstance(frame, dict) else None
    if frame.get("type") != "welcome" or not isinstance(worker, int):
        raise Failed(f"expected a welcome frame, got {frame!r}")
    return worker


async def _run(
    probe: str, url: str, step_timeout: float, body: Callable[[Result], Awaitable[None]]
) -> Result:
    """Run `body` under one overall deadline, turning every way it can end into a Result."""
    result = Result(probe, url)
    started = time.perf_counter()
    try:
        async with asyncio.timeout(step_timeout * STEPS_PER_CHECK):
            await body(result)
        result.success = True
    except Unreachable as exc:
        result.reachable, result.error = False, str(exc)
    except Failed as exc:
        result.error = str(exc)
    except TimeoutError:
        result.error = f"did not finish within {step_timeout * STEPS_PER_CHECK:g} s"
    except (aiohttp.ClientError, OSError) as exc:
        result.error = describe(exc)
    result.seconds = time.perf_counter() - started
    return result


async def server(
    url: str,
    step_timeout: float = DEFAULT_STEP_TIMEOUT,
    headers: Mapping[str, str] | None = None,
) -> Result:
    async def body(result: Result) -> None:
        async with aiohttp.ClientSession() as session:
            mark = time.perf_counter()

            def step(name: str) -> None:
                nonlocal mark
                now = time.perf_counter()
                result.steps.append(Step(name, now - mark))
                mark = now

            ws = await _connect(session, url, step_timeout, headers)
            step("handshake")
            try:
                await _welcome(ws, step_timeout)
                step("welcome")
                token = secrets.token_hex(4)
                await ws.send_str(orjson.dumps({"type": "ping", "id": token}).decode())
                pong = await _receive(ws, step_timeout, "pong")
                if pong != {"type": "pong", "id": token}:
                    raise Failed(f"expected a pong with id {token!r}, got {pong!r}")
                step("ping")
            finally:
                await ws.close()

    return await _run("server", url, step_timeout, body)


async def pool(
    url: str,
    workers: int,
    per_worker: int = DEFAULT_PER_WORKER,
    max_spread: float = DEFAULT_MAX_SPREAD,
    step_timeout: float = DEFAULT_STEP_TIMEOUT,
    headers: Mapping[str, str] | None = None,
) -> Result:
    """`workers` * `per_worker` connections held open together (the hand-off gives each to the
    least-loaded worker, so they must spread); fails when a worker gets none or the spread of
    the counts passes `max_spread`."""

    async def body(result: Result) -> None:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
            opened: list[aiohttp.ClientWebSocketResponse] = []

            async def one() -> int:
                ws = await _connect(session, url, step_timeout, headers)
                opened.append(ws)
                return await _welcome(ws, step_timeout)

            try:
                started = time.perf_counter()
                outcomes = await asyncio.gather(
                    *(one() for _ in range(workers * per_worker)), return_exceptions=True
                )
                result.steps.append(Step("connect", time.perf_counter() - started))
            finally:
                await asyncio.gather(*(ws.close() for ws in opened), return_exceptions=True)
        reached = [o for o in outcomes if isinstance(o, int)]
        errors = [o for o in outcomes if not isinstance(o, int)]
        for error in errors:
            if not isinstance(error, Exception):  # cancelled: the caller's to handle
                raise error
        if errors and not reached:
            raise errors[0]
        counts = Counter(reached)
        result.workers = {index: counts.get(index, 0) for index in range(workers)}
        result.workers.update(counts)  # a worker index beyond the expected ones shows too
        result.figures["failed"] = len(errors)
        fewest, most = min(result.workers.values()), max(result.workers.values())
        if fewest:  # a worker with none has no ratio: it fails below
            result.figures["spread"] = most / fewest
        idle = [index for index, count in sorted(result.workers.items()) if count == 0]
        lost = f"; {len(errors)} connections failed: {errors[0]}" if errors else ""
        if idle:
            raise Failed(
                f"worker {', '.join(map(str, idle))} got none of {len(outcomes)} connections{lost}"
            )
        if errors:
            raise Failed(lost.removeprefix("; "))
        if most / fewest > max_spread:
            raise Failed(
                f"spread {most / fewest:.2f} (most {most} / fewest {fewest}) is over {max_spread:g}"
            )

    return await _run("pool", url, step_timeout, body)


def percentile(ordered: list[float], q: float) -> float:
    """Nearest-rank percentile of sorted values: a value that was measured, never interpolated."""
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


async def echo(
    url: str,
    count: int = DEFAULT_ECHO_COUNT,
    size: int = DEFAULT_ECHO_BYTES,
    step_timeout: float = DEFAULT_STEP_TIMEOUT,
    headers: Mapping[str, str] | None = None,
) -> Result:
    """`count` round trips, one at a time, of an echo message with a `size`-byte payload."""

    async def body(result: Result) -> None:
        async with aiohttp.ClientSession() as session:
            ws = await _connect(session, url, step_timeout, headers)
            try:
                await _welcome(ws, step_timeout)
                times = []
                payload = "x" * size
                for index in range(count):
                    frame = orjson.dumps({"type": "echo", "id": index, "payload": payload})
                    sent = time.perf_counter()
                    await ws.send_str(frame.decode())
                    reply = await _receive(ws, step_timeout, f"echo reply {index}")
                    times.append(time.perf_counter() - sent)
                    if reply != {"type": "echo", "id": index, "payload": payload}:
                        raise Failed(f"echo {index} came back changed: {str(reply)[:80]}")
            finally:
                await ws.close()
        ordered = sorted(times)
        result.figures = {
            "min": ordered[0],
            "avg": sum(ordered) / len(ordered),
            "p50": percentile(ordered, 50),
            "p99": percentile(ordered, 99),
            "max": ordered[-1],
        }

    return await _run("echo", url, step_timeout, body)
