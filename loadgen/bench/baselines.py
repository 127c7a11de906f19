"""The bare echo servers wsmon is measured against: what the same work costs with nothing else.

    python -P -m wsmon.loadgen.bench.baselines aiohttp --port 9000 [--reuse-port]
    python -P -m wsmon.loadgen.bench.baselines websockets --port 9000

Both run on uvloop, echo text frames verbatim and negotiate no compression, as wsmon does.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

import uvloop


async def aiohttp_echo(port: int, reuse_port: bool) -> None:
    from aiohttp import WSMsgType, web

    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False)
        await ws.prepare(request)
        async for msg in ws:
            if msg.type is WSMsgType.TEXT:
                await ws.send_str(msg.data)
        return ws

    app = web.Application()
    app.router.add_get("/ws", echo)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, reuse_port=reuse_port, backlog=4096).start()
    await _until_terminated()
    await runner.cleanup()


async def websockets_echo(port: int, reuse_port: bool) -> None:
    from websockets.asyncio.server import ServerConnection, serve

    async def echo(ws: ServerConnection) -> None:
        async for message in ws:
            await ws.send(message)

    async with serve(
        echo,
        "127.0.0.1",
        port,
        compression=None,
        reuse_port=reuse_port,
        backlog=4096,
        max_queue=None,
        ping_interval=None,
    ):
        await _until_terminated()


async def _until_terminated() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("server", choices=("aiohttp", "websockets"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--reuse-port", action="store_true")
    args = parser.parse_args()
    serve = aiohttp_echo if args.server == "aiohttp" else websockets_echo
    uvloop.run(serve(args.port, args.reuse_port))


if __name__ == "__main__":
    main()
