"""A worker process of `wsmon serve`: serves the connections the supervisor hands it.

Started by the supervisor (pool.py) as `python -P -m wsmon.exporter.worker` (-P: the current
directory cannot shadow wsmon's modules), with two inherited Unix sockets: the control channel
(relay, metrics, drain) and the hand-off socket, on which each accepted TCP connection arrives as
a file descriptor (SCM_RIGHTS), with a message naming its listener and its client's address.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import logging
import os
import signal
import socket
import ssl
from pathlib import Path

import orjson
from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from . import webconfig
from .app import Worker
from .cluster import Supervised
from .config import Settings
from .control import OPERATIONS, PUBLIC, ControlChannel, Op
from .heap import HeldObjects, PauseTimer
from .hub import Hub
from .logs import configure_logging
from .metrics import WorkerMetrics

log = logging.getLogger(__name__)

HANDOFF_MESSAGE = 128  # bytes at most: the listener's tag and the client's address (control.PUBLIC)


def timed_out(exc: BaseException | None) -> bool:
    """Whether a connection ended because the kernel gave up on its peer: keepalive probes or
    retransmissions went unanswered (ETIMEDOUT). A peer that vanished does that; so does a
    healthy one whose probes this host dropped (a burst of probes past
    net.core.netdev_max_backlog on loopback or a container's veth: docs/performance.md)."""
    return isinstance(exc, OSError) and exc.errno == errno.ETIMEDOUT


async def run_worker(settings: Settings, index: int, control_fd: int, handoff_fd: int) -> None:
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_unix_connection(sock=socket.socket(fileno=control_fd))
    channel = ControlChannel(reader, writer)
    stop = asyncio.Event()
    cluster: Supervised | None = None

    def link(metrics: WorkerMetrics, hub: Hub) -> Supervised:
        nonlocal cluster
        cluster = Supervised(channel, metrics.registry, hub, stop.set)
        return cluster

    worker = Worker(settings, index, link)
    assert cluster is not None
    runners = [web.AppRunner(worker.application(), handle_signals=False, access_log=None)]
    tls: ssl.SSLContext | None = None
    if settings.metrics_listen:
        # Read again here (the supervisor checked it at start): the TLS context is per process.
        web_config = (
            webconfig.load(Path(settings.metrics_web_config_file))
            if settings.metrics_web_config_file
            else webconfig.WebConfig()
        )
        tls = web_config.ssl_context()
        operations = worker.operations_application(web_config)
        runners.append(web.AppRunner(operations, handle_signals=False, access_log=None))
    servers: dict[bytes, web.Server] = {}
    for tag, runner in zip((PUBLIC, OPERATIONS), runners, strict=False):
        await runner.setup()
        assert runner.server is not None
        servers[tag] = runner.server
    handoff = socket.socket(fileno=handoff_fd)
    handoff.setblocking(False)
    # With the per-address cap, each public connection's address is reported when it ends.
    addresses: dict[RequestHandler, str] = {}
    track = settings.max_connections_per_address > 0
    handshake_timeout = settings.handshake_timeout_seconds

    held = HeldObjects(loop)
    pauses = PauseTimer(worker.metrics)
    pauses.install()

    # aiohttp's servers are told of every connection that closes: that is what the supervisor's
    # balancing counts (Supervised.connection_ended).
    def watch(server: web.Server) -> None:
        lost = server.connection_lost

        def connection_lost(handler: RequestHandler, exc: BaseException | None = None) -> None:
            lost(handler, exc)
            if timed_out(exc):
                worker.metrics.timed_out.value += 1
            held.closed(handler)
            cluster.connection_ended(addresses.pop(handler, None))

        server.connection_lost = connection_lost  # type: ignore[method-assign]

    for server in servers.values():
        watch(server)
    pending: set[asyncio.Task[None]] = set()

    async def take_on(sock: socket.socket, tag: bytes, address: str) -> None:
        counted = track and tag == PUBLIC
        server = servers[tag]
        made: list[RequestHandler] = []

        def protocol() -> RequestHandler:
            # The address is recorded as the handler is made, before the connection can be
            # lost: a reset that comes first is reported with its address all the same.
            handler = server()
            made.append(handler)
            held.opened(handler)
            if counted:
                addresses[handler] = address
            return handler

        try:
            if tag == OPERATIONS and tls is not None:
                await loop.connect_accepted_socket(
                    protocol, sock, ssl=tls, ssl_handshake_timeout=handshake_timeout
                )
            else:
                await loop.connect_accepted_socket(protocol, sock)
        except OSError as exc:
            # The peer reset before we got to it, or its TLS handshake failed: the handler
            # never saw a connection, and the connection has ended all the same.
            log.debug("hand-off failed: %s", exc)
            sock.close()
            for handler in made:
                addresses.pop(handler, None)
                held.closed(handler)
            cluster.connection_ended(address if counted else None)

    def take_connections() -> None:
        while True:
            try:
                message, fds, _, _ = socket.recv_fds(handoff, HANDOFF_MESSAGE, 1)
            except BlockingIOError:
                return
            if not fds:  # the supervisor closed the hand-off socket
                loop.remove_reader(handoff.fileno())
                stop.set()
                return
            tag, address = message[:1], message[1:].decode()
            sock = socket.socket(fileno=fds[0])
            sock.setblocking(False)
            task = loop.create_task(take_on(sock, tag, address))
            pending.add(task)
            task.add_done_callback(pending.discard)

    loop.add_reader(handoff.fileno(), take_connections)
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    # Everything alive now (modules, the app) lives as long as the process.
    held.start()
    channel.send({"op": Op.HELLO, "pid": os.getpid()})
    log.debug("worker %d ready (pid %d)", index, os.getpid())

    await stop.wait()
    loop.remove_reader(handoff.fileno())
    held.stop()

    async def shut_down() -> None:
        await worker.drain()
        for runner in reversed(runners):
            await runner.cleanup()

    # The supervisor kills a worker that has not drained within drain_seconds + 2 s (pool.py),
    # but after a SIGKILL of the supervisor nobody does: a handler stuck writing to a client that
    # stopped reading kept its worker (and its connections) alive through aiohttp's 60 s shutdown
    # timeout, twice, 122 s in all (tests/integration/test_faults.py). So the worker holds itself
    # to the bound, a second before the supervisor would act; leaving run() cancels what is left.
    try:
        await asyncio.wait_for(shut_down(), settings.drain_seconds + 1.0)
    except TimeoutError:
        log.warning("worker %d: not drained in %.1fs; exiting", index, settings.drain_seconds + 1)
        return
    log.debug("worker %d drained", index)


def main() -> None:
    parser = argparse.ArgumentParser(description="wsmon worker (started by `wsmon serve`)")
    parser.add_argument("--index", type=int, required=True)
    parser.add_argument("--control-fd", type=int, required=True)
    parser.add_argument("--handoff-fd", type=int, required=True)
    parser.add_argument("--settings", required=True, help="the supervisor's settings, as JSON")
    args = parser.parse_args()
    settings = Settings(**orjson.loads(args.settings))
    configure_logging(settings.log_level, f"worker-{args.index}")
    # The supervisor owns Ctrl-C: a terminal's SIGINT reaches the whole process group, and the
    # supervisor turns it into an orderly drain of every worker.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from wsmon.loop import run

    run(run_worker(settings, args.index, args.control_fd, args.handoff_fd))


if __name__ == "__main__":
    main()
