"""The connection runner against small in-process servers that misbehave on purpose: the
accounting must hold (every attempt is a reply or a named failure) whatever the server does.
"""

from __future__ import annotations

import errno
from collections.abc import AsyncIterator, Awaitable, Callable

import orjson
import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosedError
from websockets.frames import Close

from wsmon.loadgen.client import Run, RunPlan, close_kind, connect_error_kind, probe
from wsmon.loadgen.profiles import parse_mix, resolve_profile
from wsmon.loadgen.stats import LOST, NOT_SENT, TIMEOUT, Recorder

Handler = Callable[[ServerConnection], Awaitable[None]]
WELCOME = orjson.dumps({"type": "welcome", "connection_id": "t-1", "worker": 0}).decode()


@pytest.fixture
async def server_url() -> AsyncIterator[Callable[[Handler], Awaitable[str]]]:
    servers = []

    async def start(handler: Handler) -> str:
        server = await serve(handler, "127.0.0.1", 0, compression=None)
        servers.append(server)
        port = next(iter(server.sockets)).getsockname()[1]
        return f"ws://127.0.0.1:{port}/ws"

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


async def run(url: str, *, connections: int = 3, mix: str = "echo=1") -> Recorder:
    plan = RunPlan(
        profile=resolve_profile(
            "custom", connections=connections, interval=0.05, duration=0.5, ramp_up=0
        ),
        urls=(url,),
        mix=parse_mix(mix),
        seed=1,
        connect_timeout=2.0,
        grace=0.3,
    )
    recorder = Recorder()
    await Run(plan, recorder).execute()
    assert recorder.in_flight == 0
    assert recorder.replies + recorder.failures.total() == recorder.attempted
    return recorder


async def test_echo_server_answers_everything(server_url: Callable[..., Awaitable[str]]) -> None:
    async def echo(ws: ServerConnection) -> None:
        await ws.send(WELCOME)
        async for message in ws:
            await ws.send(message)

    recorder = await run(await server_url(echo))
    assert recorder.connections_succeeded == 3
    assert recorder.failures.total() == 0
    # 0.5 s at one message every 50 ms: 10 slots per connection, give or take the phase.
    assert 27 <= recorder.replies <= 33
    assert recorder.latencies.count == recorder.replies
    assert recorder.workers == {"w0": 3}


async def test_unanswered_messages_are_timeouts(server_url: Callable[..., Awaitable[str]]) -> None:
    async def silent(ws: ServerConnection) -> None:
        await ws.send(WELCOME)
        async for _ in ws:
            pass

    recorder = await run(await server_url(silent))
    assert recorder.replies == 0
    assert recorder.attempted > 0
    assert recorder.failures == {TIMEOUT: recorder.attempted}


async def test_a_dropped_connection_fails_its_outstanding_and_remaining_messages(
    server_url: Callable[..., Awaitable[str]],
) -> None:
    async def drop_after_two(ws: ServerConnection) -> None:
        await ws.send(WELCOME)
        await ws.recv()
        await ws.recv()  # the second message is never answered
        await ws.close(1011, "boom")

    recorder = await run(await server_url(drop_after_two))
    assert recorder.dropped == {"closed_1011": 3}
    assert recorder.replies == 0
    assert recorder.failures[LOST] == 3 * 2
    assert recorder.failures[NOT_SENT] > 0


async def test_error_frames_fail_the_message_they_answer(
    server_url: Callable[..., Awaitable[str]],
) -> None:
    async def limited(ws: ServerConnection) -> None:
        await ws.send(WELCOME)
        async for message in ws:
            ref = orjson.loads(message)["id"]
            await ws.send(
                orjson.dumps(
                    {"type": "error", "code": "rate_limited", "message": "slow down", "ref": ref}
                ).decode()
            )

    recorder = await run(await server_url(limited))
    assert recorder.failures == {"error:rate_limited": recorder.attempted}
    assert recorder.error_frames == {"rate_limited": recorder.attempted}


async def test_refusal_before_the_welcome_is_a_failed_connection(
    server_url: Callable[..., Awaitable[str]],
) -> None:
    async def full(ws: ServerConnection) -> None:
        await ws.close(1013, "worker at capacity")

    url = await server_url(full)
    assert await probe(url, 2.0, None) is None  # reachable: the run reports the refusals
    recorder = await run(url)
    assert recorder.connections_succeeded == 0
    assert recorder.connection_errors == {"closed_1013": 3}
    assert recorder.attempted == 0


async def test_setup_frames_precede_chat_and_deliveries_are_counted_apart(
    server_url: Callable[..., Awaitable[str]],
) -> None:
    seen: list[str] = []

    async def chat_room(ws: ServerConnection) -> None:
        await ws.send(WELCOME)
        async for message in ws:
            frame = orjson.loads(message)
            seen.append(frame["type"])
            if "id" in frame:
                await ws.send(orjson.dumps({"type": "ack", "id": frame["id"]}).decode())
                await ws.send(orjson.dumps({"type": "chat", "text": "hi", "from": "x"}).decode())

    recorder = await run(await server_url(chat_room), connections=1, mix="chat=1")
    assert seen[0] == "join"
    assert set(seen[1:]) == {"chat"}
    assert recorder.setup_frames == {"join": 1}
    assert recorder.replies == recorder.attempted > 0
    assert recorder.deliveries == {"chat": recorder.replies}


def test_connect_errors_have_short_stable_names() -> None:
    assert connect_error_kind(TimeoutError()) == "connect_timeout"
    assert connect_error_kind(ConnectionRefusedError(errno.ECONNREFUSED, "refused")) == (
        "connect_refused"
    )
    assert connect_error_kind(OSError(errno.EMFILE, "too many")) == "connect_emfile"
    assert connect_error_kind(RuntimeError()) == "connect_error"
    assert close_kind(ConnectionClosedError(Close(1013, "full"), None)) == "closed_1013"
    assert close_kind(ConnectionClosedError(None, None)) == "closed_1006"
