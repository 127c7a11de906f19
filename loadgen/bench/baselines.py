"""The bare echo servers wsmon is measured against: what the same work costs with nothing else.

    python -P -m wsmon.loadgen.bench.baselines aiohttp --port 9000 [--reuse-port] [--keepalive 30]
    python -P -m wsmon.loadgen.bench.baselines websockets --port 9000

Both run on uvloop, echo text frames verbatim and negotiate no compression, as wsmon does. With
--keepalive, bare aiohttp's connections have TCP keepalive as wsmon's do (keepalive_seconds): set
on the listening socket, which every accepted connection inherits on Linux.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import socket

import uvloop

from wsmon import keepalive


def keepalive_listener(port: int, reuse_port: bool, idle: int) -> socket.socket:
    """A listening socket whose connections get wsmon's TCP keepalive after `idle` seconds."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    keepalive.enable(sock, idle)
    sock.bind(("127.0.0.1", port))
    sock.listen(4096)
    return sock


async def aiohttp_echo(port: int, reuse_port: bool, keepalive: int = 0) -> None:
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
    if keepalive:
        site: web.BaseSite = web.SockSite(runner, keepalive_listener(port, reuse_port, keepalive))
    else:
        site = web.TCPSite(runner, "127.0.0.1", port, reuse_port=reuse_port, backlog=4096)
    await site.start()
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
    parser.add_argument(
        "--keepalive", type=int, default=0, help="aiohttp: TCP keepalive after this many idle s"
    )
    args = parser.parse_args()
    if args.keepalive and args.server != "aiohttp":
        parser.error("--keepalive is bare aiohttp's only")
    if args.server == "aiohttp":
        uvloop.run(aiohttp_echo(args.port, args.reuse_port, args.keepalive))
    else:
        uvloop.run(websockets_echo(args.port, args.reuse_port))


if __name__ == "__main__":
    main()
