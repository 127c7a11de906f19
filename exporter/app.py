"""One worker's aiohttp apps: /ws, /ws/echo, /runbooks, /testing and /api/health on the public port;
/metrics, /healthz, /readyz and /probe there too, or on the operations port (metrics_listen)."""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import Any

import orjson
from aiohttp import WSMsgType, hdrs, web
from aiohttp.abc import AbstractStreamWriter
from aiohttp.http_websocket import WebSocketError

from . import auth, origins, probe, protocol, runbooks, testing_page, webconfig
from .caps import USER_LIMIT
from .cluster import Cluster
from .config import Settings
from .exposition import Exposition
from .frames import text_frame
from .handlers import Handlers, Route
from .hub import Connection, Hub
from .logs import Throttled
from .metrics import Cell, WorkerMetrics
from .protocol import MessageId, ProtocolError

log = logging.getLogger(__name__)

GOING_AWAY = 1001
TRY_AGAIN_LATER = 1013
INVALID_TEXT = 1007
# Past this many unsent bytes to one client, its read loop waits before reading more from it.
REPLY_HIGH_WATER = 64 * 1024

ClusterFactory = Callable[[WorkerMetrics, Hub], Cluster]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Worker:
    """One worker's state: its connections, metrics and link to the pool."""

    def __init__(self, settings: Settings, index: int, cluster_factory: ClusterFactory) -> None:
        self.settings = settings
        self.index = index
        self.metrics = WorkerMetrics(index, settings.worker_capacity)
        self.hub = Hub(self.metrics, settings.send_buffer_limit)
        self.cluster = cluster_factory(self.metrics, self.hub)
        self.handlers = Handlers(self.hub, self.cluster, self.metrics)
        self.draining = False
        self.exposition = Exposition()
        # On metrics_listen's port, the probe connects to the public one, as clients do (the
        # supervisor gives its workers the port it bound: settings.port).
        public = (
            probe.public_target(settings.host, settings.port) if settings.metrics_listen else None
        )
        # The probe's own connections present the pool's probe key (auth.Gatekeeper).
        probe_key = os.environ.get(auth.PROBE_KEY_VARIABLE)
        self.prober = probe.Prober(settings.workers, probe_key, public)
        self.origins = origins.Policy.from_setting(settings.allowed_origins)
        self.gatekeeper = auth.Gatekeeper(auth.from_settings(settings), probe_key)
        self.tasks: set[asyncio.Future[Any]] = set()  # closes under way (expired tokens)
        self._refusals = Throttled(log)
        self._echoes: set[web.WebSocketResponse] = set()  # open /ws/echo connections
        # Connection ids are unique across workers and restarts: worker, process nonce, sequence.
        self._ids = itertools.count(1)
        self._nonce = secrets.token_hex(3)

    def _new_id(self) -> str:
        return f"{self.index}-{self._nonce}-{next(self._ids)}"

    def _websocket(self, decode_text: bool = True) -> web.WebSocketResponse:
        # Compression off: it costs CPU per message, and fan-out relies on whole-frame writes
        # (frames.py). No WebSocket heartbeat either: aiohttp re-arms its timer on every message,
        # about 1 us each; the supervisor sets TCP keepalive on every socket instead.
        # aiohttp refuses a frame of max_msg_size bytes; max_message_bytes is the largest accepted.
        # The bearer subprotocol is answered when offered (a browser's way of sending its token).
        return web.WebSocketResponse(
            protocols=(auth.BEARER_PROTOCOL,),
            max_msg_size=self.settings.max_message_bytes + 1,
            compress=False,
            decode_text=decode_text,
        )

    @property
    def at_capacity(self) -> bool:
        return len(self.hub.connections) + len(self._echoes) >= self.settings.worker_capacity

    def _count_active(self) -> None:
        self.metrics.active.value = len(self.hub.connections) + len(self._echoes)

    def _authenticate(self, request: web.Request) -> auth.Identity | None:
        """The handshake's identity (None with authentication off), or 401 before the upgrade."""
        offered = request.headers.get(hdrs.SEC_WEBSOCKET_PROTOCOL, "")
        protocols = [p.strip() for p in offered.split(",") if p.strip()]
        token = auth.token_from(request.headers.get(hdrs.AUTHORIZATION), protocols)
        try:
            return self.gatekeeper.identify(token)
        except auth.AuthError as exc:
            self.metrics.refused["unauthenticated"].value += 1
            # The reason only: a token never reaches a log line.
            self._refusals.warn("unauthenticated", f"refused a WebSocket: {exc}")
            raise web.HTTPUnauthorized(
                headers={hdrs.WWW_AUTHENTICATE: auth.challenge(exc)}, text=f"{exc}\n"
            ) from None

    async def _admit(
        self, request: web.Request, decode_text: bool
    ) -> tuple[web.WebSocketResponse, AbstractStreamWriter | None, auth.Identity | None]:
        """Refuse a foreign Origin with 403 before the upgrade; complete the handshake, then
        close at once with 1001 (draining) or 1013 (full).

        Checked after the handshake, so a drain that starts meanwhile cannot miss the connection.
        Returns the socket and, when admitted, its stream (None when refused).
        """
        origin = request.headers.get(hdrs.ORIGIN)
        if not self.origins.allows(origin, request.host):
            # Before the upgrade: a page of another site must not get a socket at all (its
            # visitor's browser would lend it the visitor's network and cookies).
            self.metrics.refused["origin"].value += 1
            self._refusals.warn("origin", f"refused a WebSocket from origin {origin!r}")
            raise web.HTTPForbidden(text="origin not allowed\n")
        identity = self._authenticate(request)
        await self._claim(identity)
        try:
            ws = self._websocket(decode_text)
            stream = await ws.prepare(request)
            if self.draining:
                reason, code, text = "draining", GOING_AWAY, b"server shutting down"
            elif self.at_capacity:
                reason, code, text = "capacity", TRY_AGAIN_LATER, b"worker at capacity"
            else:
                return ws, stream, identity
        except BaseException:
            self._unclaim(identity)
            raise
        self._unclaim(identity)
        self.metrics.rejected[reason].value += 1
        await ws.close(code=code, message=text)
        return ws, None, identity

    def _capped(self, identity: auth.Identity | None) -> bool:
        # The pool's own probes are never capped: a probe refused would page for nothing.
        return (
            self.settings.max_connections_per_user > 0
            and identity is not None
            and identity is not auth.PROBE_IDENTITY
        )

    async def _claim(self, identity: auth.Identity | None) -> None:
        """One more connection for the token's user, or 429 before the upgrade (caps.py)."""
        if not self._capped(identity):
            return
        assert identity is not None
        if not await self.cluster.claim_user(identity.user):
            self.metrics.refused[USER_LIMIT].value += 1
            cap = self.settings.max_connections_per_user
            # The user is named in the log (throttled) and never in a label.
            self._refusals.warn(USER_LIMIT, f"refused a WebSocket: {identity.user} holds {cap}")
            raise web.HTTPTooManyRequests(
                headers={hdrs.RETRY_AFTER: "5"},
                text=f"this user holds {cap} connections, the most allowed; close one first\n",
            )

    def _unclaim(self, identity: auth.Identity | None) -> None:
        if self._capped(identity):
            assert identity is not None
            self.cluster.user_ended(identity.user)

    async def serve_ws(self, request: web.Request) -> web.StreamResponse:
        # Text frames stay bytes: orjson parses (and checks the UTF-8 of) bytes directly, and an
        # echo goes back as the very bytes that came in.
        ws, stream, identity = await self._admit(request, decode_text=False)
        if stream is None:
            return ws
        transport = request.transport
        assert transport is not None
        m = self.metrics
        conn = Connection(self._new_id(), ws, transport)
        expiry = self._expire(ws, identity)
        self.hub.add(conn)
        if identity is not None:  # the token names the user: `identify` cannot change it
            conn.identity = identity
            self.hub.identify(conn, identity.user)
        self._count_active()
        m.opened.value += 1
        violation: int | None = None
        try:
            self._send(conn, protocol.welcome(conn.id, self.index), m.sent["welcome"])
            violation = await self._read_loop(conn, ws, stream.drain)
        finally:
            expiry.cancel()
            self._unclaim(identity)
            self.hub.remove(conn)
            self._count_active()
            # aiohttp reports the close handshake's last code, not the one this side sent.
            m.close_code(auth.EXPIRED if expiry.expired else violation or ws.close_code).value += 1
        return ws

    def _admin(self, handler: Handler, *, browser: bool = False) -> Handler:
        """`handler` for an admin token only (Bearer; or, for a page a browser opens, the token
        as the password of Basic authentication, which the browser asks its user for)."""

        async def guarded(request: web.Request) -> web.StreamResponse:
            if not self.gatekeeper.enabled:
                return await handler(request)
            try:
                identity = self.gatekeeper.identify(
                    auth.token_from(request.headers.get(hdrs.AUTHORIZATION))
                )
            except auth.AuthError as exc:
                self.metrics.refused["unauthenticated"].value += 1
                self._refusals.warn("unauthenticated", f"refused {request.path}: {exc}")
                challenge = auth.challenge(exc)
                if browser:
                    challenge = f'Basic realm="wsmon admin", {challenge}'
                raise web.HTTPUnauthorized(
                    headers={hdrs.WWW_AUTHENTICATE: challenge}, text=f"{exc}\n"
                ) from None
            if identity is None or not identity.admin:
                raise web.HTTPForbidden(text=f"{request.path} needs the admin role\n")
            return await handler(request)

        return guarded

    def _expire(self, ws: web.WebSocketResponse, identity: auth.Identity | None) -> Expiry:
        """Close the connection with 4001 when its token expires."""
        if identity is None or identity.expires is None:
            return NEVER  # shared: no object per connection that cannot expire
        expiry = Expiry()

        def close() -> None:
            expiry.expired = True
            closing = asyncio.ensure_future(ws.close(code=auth.EXPIRED, message=b"token expired"))
            self.tasks.add(closing)  # held until done: the loop keeps only a weak reference
            closing.add_done_callback(self.tasks.discard)

        delay = max(0.0, identity.expires - time.time())
        expiry.handle = asyncio.get_running_loop().call_later(delay, close)
        return expiry

    def _send(self, conn: Connection, payload: bytes, counter: Cell) -> None:
        """Write one reply frame to the sender (off the hot path; _read_loop inlines this)."""
        if not conn.ws.closed:
            conn.transport.write(text_frame(payload))
            self.metrics.bytes_out.value += len(payload)
            counter.value += 1

    async def _read_loop(
        self, conn: Connection, ws: web.WebSocketResponse, drain: Callable[[], Awaitable[None]]
    ) -> int | None:
        """The per-message hot path: no label lookups, echo sent back without re-encoding.

        Replies are written straight to the transport (aiohttp's send coroutine costs more than
        the rest of the protocol); when the client stops reading and the buffer passes the high
        water mark, the loop waits for it to drain, so a flooding client only slows itself.
        Returns the close code of a protocol violation that ended the connection, if any.
        """
        m = self.metrics
        routes = self.handlers.routes
        rate = self.settings.rate_limit
        bytes_in, bytes_out = m.bytes_in, m.bytes_out
        write, buffered = conn.transport.write, conn.transport.get_write_buffer_size
        async for msg in ws:
            started = perf_counter()
            if msg.type is WSMsgType.TEXT:
                raw: bytes = msg.data
                bytes_in.value += len(raw)
                try:
                    message_type, obj, ref = protocol.parse(raw)
                except ProtocolError as exc:
                    if exc.code == protocol.INVALID_JSON and not _is_utf8(raw):
                        return await self._fail_invalid_text(conn, ws)
                    m.received[exc.message_type].value += 1
                    self._send_error(conn, exc, started)
                else:
                    route = routes[message_type]
                    route.received.value += 1
                    try:
                        if not conn.within_rate(started, rate):
                            raise ProtocolError(
                                message_type,
                                protocol.RATE_LIMITED,
                                f"over {rate} messages a second",
                                ref,
                            )
                        reply = (
                            raw if route.handle is None else route.handle(conn, obj, ref, started)
                        )
                    except ProtocolError as exc:
                        self._send_error(conn, exc, started)
                    except Exception:
                        # A handler bug is the server's failure, not the client's: one message
                        # fails, not the connection or this worker's read loop.
                        self._fail_internal(conn, route, message_type, ref, started)
                    else:
                        # No await since this frame was read (handlers are plain functions), so
                        # the socket cannot have started closing: aiohttp ends the iteration then.
                        if reply is not None:
                            write(text_frame(reply))
                            bytes_out.value += len(reply)
                            route.replies.value += 1
                        route.latency.observe(perf_counter() - started)
            elif msg.type is WSMsgType.ERROR:
                return self._violation(conn, msg.data)
            else:
                self._binary(conn, msg.data, started)
            # Every reply, an error included, counts against the client's unread backlog.
            if buffered() > REPLY_HIGH_WATER:
                await drain()
        return None

    async def _fail_invalid_text(self, conn: Connection, ws: web.WebSocketResponse) -> int:
        """RFC 6455 8.1: a text frame that is not UTF-8 fails the connection, with 1007."""
        self.metrics.received[protocol.INVALID].value += 1
        self.metrics.client_error(protocol.INVALID, protocol.INVALID_FRAME)
        log.info("connection %s closed with 1007: text frame is not UTF-8", conn.id)
        await ws.close(code=INVALID_TEXT, message=b"text frame is not valid UTF-8")
        return INVALID_TEXT

    def _binary(self, conn: Connection, data: bytes, started: float) -> None:
        self.metrics.bytes_in.value += len(data)
        self.metrics.received[protocol.INVALID].value += 1
        error = ProtocolError(
            protocol.INVALID,
            protocol.BINARY_FRAME,
            "binary frames are not part of the /ws protocol; send JSON text",
        )
        self._send_error(conn, error, started)

    def _violation(self, conn: Connection, error: object) -> int | None:
        """aiohttp closed the connection over a bad frame: 1009 too large, 1002/1007 malformed.

        Its close code is returned because aiohttp reports 1006 once its reader has failed.
        """
        code = error.code if isinstance(error, WebSocketError) else None
        self.metrics.received[protocol.INVALID].value += 1
        reason = protocol.TOO_LARGE if code == 1009 else protocol.INVALID_FRAME
        self.metrics.client_error(protocol.INVALID, reason)
        log.info("connection %s closed with %s: %s", conn.id, code, error)
        return code

    def _send_error(self, conn: Connection, exc: ProtocolError, started: float) -> None:
        m = self.metrics
        m.client_error(exc.message_type, exc.code)
        self._send(conn, protocol.error(exc.code, exc.message, exc.ref), m.sent["error"])
        m.latency[exc.message_type].observe(perf_counter() - started)

    def _fail_internal(
        self, conn: Connection, route: Route, message_type: str, ref: MessageId, started: float
    ) -> None:
        """Count, log (with the traceback) and answer a handler that raised unexpectedly.

        The client learns only that the server failed, never the exception's text, which may
        hold other clients' data.
        """
        route.failures.value += 1
        log.exception("connection %s: the %s handler failed", conn.id, message_type)
        message = f"{message_type}: the server failed to handle this message"
        reply = protocol.error(protocol.INTERNAL_ERROR, message, ref)
        self._send(conn, reply, self.metrics.sent["error"])
        route.latency.observe(perf_counter() - started)

    async def serve_echo(self, request: web.Request) -> web.StreamResponse:
        """/ws/echo: every text and binary frame back verbatim (echo tests, protocol compliance).

        Its connections count like any other (active, capacity, opened, closed, drain) but are
        not /ws members: no welcome, no deliveries, and their frames are not messages by type.
        """
        ws, stream, identity = await self._admit(request, decode_text=True)
        if stream is None:
            return ws
        m = self.metrics
        expiry = self._expire(ws, identity)
        self._echoes.add(ws)
        self._count_active()
        m.opened.value += 1
        try:
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    await ws.send_str(msg.data)
                    size = len(msg.data) if msg.data.isascii() else len(msg.data.encode())
                elif msg.type is WSMsgType.BINARY:
                    await ws.send_bytes(msg.data)
                    size = len(msg.data)
                else:
                    continue
                m.bytes_in.value += size
                m.bytes_out.value += size
        finally:
            expiry.cancel()
            self._unclaim(identity)
            self._echoes.discard(ws)
            self._count_active()
            m.close_code(auth.EXPIRED if expiry.expired else ws.close_code).value += 1
        return ws

    async def serve_metrics(self, request: web.Request) -> web.Response:
        snapshot = await self.cluster.collect()
        body, content_type = self.exposition.render(snapshot, request.headers.get("Accept"))
        return web.Response(body=body, headers={"Content-Type": content_type})

    async def serve_runbooks(self, request: web.Request) -> web.Response:
        return web.Response(body=runbooks.page(), content_type="text/html", charset="utf-8")

    async def serve_healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def serve_readyz(self, request: web.Request) -> web.Response:
        if self.draining:
            return web.Response(status=503, text="draining\n")
        if self.at_capacity:
            return web.Response(status=503, text="at capacity\n")
        return web.Response(text="ready\n")

    async def serve_health(self, request: web.Request) -> web.Response:
        document = await self.cluster.health()
        status = 503 if document["status"] == "unhealthy" else 200
        return web.Response(
            body=orjson.dumps(document), status=status, content_type="application/json"
        )

    async def drain(self) -> None:
        """Refuse new connections and close every open one with 1001 (going away)."""
        self.draining = True
        sockets = [conn.ws for conn in self.hub.connections] + list(self._echoes)
        closing = [ws.close(code=GOING_AWAY, message=b"server shutting down") for ws in sockets]
        if closing:
            try:
                await asyncio.wait_for(
                    asyncio.gather(*closing, return_exceptions=True), self.settings.drain_seconds
                )
            except TimeoutError:
                log.warning(
                    "drain: connections still open after %.1fs", self.settings.drain_seconds
                )

    def application(self) -> web.Application:
        """The public port's app: /ws and the pages, and, without metrics_listen, what
        operations_application would serve."""
        app = web.Application()
        app.router.add_get("/ws", self.serve_ws)
        app.router.add_get("/ws/echo", self.serve_echo)
        app.router.add_get("/runbooks", self.serve_runbooks)
        # Admin surfaces: with authentication on, they need a token with the admin role.
        app.router.add_get(
            "/testing", self._admin(testing_page.handler(self.settings.workers), browser=True)
        )
        app.router.add_get("/api/health", self.serve_health)
        if not self.settings.metrics_listen:
            self._add_operations(app, self._admin(self.prober.serve))

        async def lifecycle(app: web.Application):  # type: ignore[no-untyped-def]
            await self.cluster.start()
            # Development mode says so every minute, from one worker, so it is in every page of
            # the log anyone reads (the supervisor says it once at start).
            reminder = (
                asyncio.ensure_future(_remind_no_auth())
                if self.settings.no_auth and self.index == 0
                else None
            )
            yield
            if reminder is not None:
                reminder.cancel()
            await self.cluster.stop()

        app.cleanup_ctx.append(lifecycle)
        return app

    def operations_application(self, web_config: webconfig.WebConfig) -> web.Application:
        """The metrics_listen port's app: /metrics, /healthz, /readyz and /probe, behind the web
        config's basic auth when it lists users (then /probe takes those: a scrape sends one
        Authorization header), else /probe still needs an admin token."""
        app = web.Application(middlewares=[web_config.middleware()])
        probe = self.prober.serve if web_config.basic_auth else self._admin(self.prober.serve)
        self._add_operations(app, probe)
        return app

    def _add_operations(self, app: web.Application, probe: Handler) -> None:
        app.router.add_get("/metrics", self.serve_metrics)
        app.router.add_get("/healthz", self.serve_healthz)
        app.router.add_get("/readyz", self.serve_readyz)
        app.router.add_get("/probe", probe)


class Expiry:
    """When a connection's token expires: the timer, and whether it went off."""

    __slots__ = ("expired", "handle")

    def __init__(self) -> None:
        self.handle: asyncio.TimerHandle | None = None
        self.expired = False

    def cancel(self) -> None:
        if self.handle is not None:
            self.handle.cancel()


NEVER = Expiry()
NO_AUTH_REMINDER_SECONDS = 60.0


async def _remind_no_auth() -> None:
    while True:
        await asyncio.sleep(NO_AUTH_REMINDER_SECONDS)
        log.warning("%s", auth.NO_AUTH_WARNING)


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
