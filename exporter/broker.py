"""Deliveries between instances through Redis pub/sub (`broker`): one publish per delivery per
instance, whichever worker it started on, and each instance fans what it receives out to all of
its own workers, exactly as the supervisor's relay does between the workers of one host.

Layout: one channel for the cluster (`broker_channel`, "wsmon" by default, + ":deliveries"),
which every instance publishes to and subscribes to. Each message is the control channel's frame
(control.py) with the instance's id and the time it was published on its own clock. An instance
drops its own messages when they come back, after timing them: publish to receipt on one clock
is the broker's delay (wsmon_broker_delay_seconds), with no clocks of two hosts compared. Why one
channel rather than one per room, topic or user: docs/architecture.md.

Redis is a dependency that fails. While it is unreachable, local delivery goes on (the relay
between this host's workers does not pass through here), every delivery meant for other instances
is counted in wsmon_broker_lost_total, never queued beyond MAX_PENDING, and both connections are
retried with a backoff that doubles up to RECONNECT_MAX; the subscription is made again on each.
A Redis that hangs rather than closes (a partition, a stopped process) is found too: publishes
time out after COMMAND_TIMEOUT, and an idle instance publishes a heartbeat every HEARTBEAT
seconds, so a subscription that has not brought one of the instance's own messages back in
STALE_AFTER seconds is taken for dead and made again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections import deque
from collections.abc import Callable
from pathlib import Path
from time import perf_counter
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

import redis.asyncio as redis
from redis.exceptions import RedisError

from .control import ControlChannel
from .logs import Throttled
from .metrics import Cell, Histogram

log = logging.getLogger(__name__)

# Deliveries waiting to be published, at most: past this (Redis slower than the instance) the
# newest are counted lost, so a slow or dead broker costs bounded memory.
MAX_PENDING: Final = 10_000
BATCH: Final = 256  # publishes sent in one pipeline round trip
RECONNECT_MIN: Final = 0.1
RECONNECT_MAX: Final = 5.0
COMMAND_TIMEOUT: Final = 5.0  # a publish not answered by then: the connection is taken for dead
HEARTBEAT: Final = 1.0  # an idle instance publishes this often, to see its own messages come back
STALE_AFTER: Final = 10.0
HEARTBEAT_OP: Final = "heartbeat"
DISCONNECTED: Final = "disconnected"
OVERFLOW: Final = "overflow"
LOST_REASONS: Final = (DISCONNECTED, OVERFLOW)


def channel_name(prefix: str) -> str:
    return f"{prefix}:deliveries"


def shown(url: str) -> str:
    """The URL without its password, for logs and /api/health."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return urlunsplit(parts._replace(netloc=user + netloc))


class BrokerMetrics:
    """The supervisor's broker series (absent without a broker)."""

    def __init__(self, registry: Any) -> None:
        self.up: Cell = registry["wsmon_broker_up"].child()
        self.published: Cell = registry["wsmon_broker_published_total"].child()
        self.received: Cell = registry["wsmon_broker_received_total"].child()
        lost = registry["wsmon_broker_lost_total"]
        self.lost: dict[str, Cell] = {reason: lost.child(reason) for reason in LOST_REASONS}
        self.reconnects: Cell = registry["wsmon_broker_reconnects_total"].child()
        self.delay: Histogram = registry["wsmon_broker_delay_seconds"].child()


class Broker:
    """This instance's link to the others: `publish` what its workers deliver, and hand what the
    others publish to `receive` (the relay to every local worker)."""

    def __init__(
        self,
        url: str,
        password_file: str,
        prefix: str,
        metrics: BrokerMetrics,
        receive: Callable[[dict[str, Any], bytes], None],
    ) -> None:
        self.url = url
        self.channel = channel_name(prefix)
        self.instance = secrets.token_hex(8)  # this run of this instance, nobody else's
        self.metrics = metrics
        self._password = Path(password_file).read_text().strip() if password_file else None
        self._receive = receive
        self._pending: deque[bytes] = deque()
        self._wake = asyncio.Event()
        self._publishing = False  # the publisher's connection answers
        self._subscribed = False
        self._lost_once = False  # the link was up and went down at least once
        self._heard = 0.0  # when the subscription last brought one of our own messages back
        self._log = Throttled(log)
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def up(self) -> bool:
        return self._publishing and self._subscribed

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._publish_forever()),
            asyncio.create_task(self._subscribe_forever()),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def publish(self, header: dict[str, Any], body: bytes) -> None:
        """Queue one delivery for the other instances, or count it lost (never block)."""
        if not self._publishing:
            self.metrics.lost[DISCONNECTED].value += 1
            return
        if len(self._pending) >= MAX_PENDING:
            self.metrics.lost[OVERFLOW].value += 1
            return
        stamped = {**header, "i": self.instance, "p": perf_counter()}
        self._pending.append(ControlChannel.encode(stamped, body))
        self._wake.set()

    # -- the two connections ---------------------------------------------------------------------

    def _client(self, command_timeout: float | None) -> redis.Redis:
        client: redis.Redis = redis.from_url(
            self.url,
            password=self._password,
            socket_timeout=command_timeout,
            socket_connect_timeout=RECONNECT_MAX,
            socket_keepalive=True,
        )
        return client

    def _set_up(self) -> None:
        """wsmon_broker_up, and a reconnect counted each time the link comes back after it was
        lost (once per outage, whichever of the two connections noticed)."""
        up = self.up
        if up and self._lost_once and not self.metrics.up.value:
            self.metrics.reconnects.value += 1
        self._lost_once = self._lost_once or (not up and bool(self.metrics.up.value))
        self.metrics.up.value = 1 if up else 0

    async def _publish_forever(self) -> None:
        delay = RECONNECT_MIN
        while True:
            client = self._client(COMMAND_TIMEOUT)
            try:
                await client.ping()
                self._publishing = True
                # Our own messages flow again from now on: the subscription is judged by what
                # comes back after this, not by the silence of the outage.
                self._heard = perf_counter()
                self._set_up()
                delay = RECONNECT_MIN
                await self._publish_until_broken(client)
            except (RedisError, OSError) as exc:
                self._down("publishing", exc)
            finally:
                self._publishing = False
                self._set_up()
                self._drop_pending()
                with contextlib.suppress(RedisError, OSError):
                    await client.aclose()
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX)

    async def _publish_until_broken(self, client: redis.Redis) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), HEARTBEAT)
            except TimeoutError:  # idle: a heartbeat, which only this instance takes notice of
                heartbeat = {"op": HEARTBEAT_OP, "i": self.instance, "p": perf_counter()}
                await client.publish(self.channel, ControlChannel.encode(heartbeat))
                continue
            self._wake.clear()
            while self._pending:
                batch = [self._pending.popleft() for _ in range(min(BATCH, len(self._pending)))]
                try:
                    async with client.pipeline(transaction=False) as pipe:
                        for frame in batch:
                            pipe.publish(self.channel, frame)
                        await pipe.execute()
                except BaseException:
                    # Not confirmed: counted lost (some may have reached Redis, none is sure to).
                    self.metrics.lost[DISCONNECTED].value += len(batch)
                    raise
                self.metrics.published.value += len(batch)

    def _drop_pending(self) -> None:
        self.metrics.lost[DISCONNECTED].value += len(self._pending)
        self._pending.clear()

    async def _subscribe_forever(self) -> None:
        delay = RECONNECT_MIN
        while True:
            # No command timeout: a subscription waits for messages as long as there are none;
            # its own heartbeats coming back are what shows it alive.
            client = self._client(None)
            pubsub = client.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                self._subscribed = True
                self._heard = perf_counter()
                self._set_up()
                if self._lost_once:
                    log.info("broker %s: subscribed to %s again", shown(self.url), self.channel)
                delay = RECONNECT_MIN
                while True:
                    message = await pubsub.get_message(timeout=HEARTBEAT)
                    if message is not None:
                        self._received(message["data"])
                    silent = perf_counter() - self._heard
                    if self._publishing and silent > STALE_AFTER:
                        raise TimeoutError(f"none of its own messages came back in {silent:.0f} s")
            except (RedisError, OSError) as exc:
                self._down("subscribed", exc)
            finally:
                self._subscribed = False
                self._set_up()
                with contextlib.suppress(RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call, unused-ignore]
                    await client.aclose()
            await asyncio.sleep(delay)
            delay = min(delay * 2, RECONNECT_MAX)

    def _received(self, data: bytes) -> None:
        try:
            header, body = ControlChannel.decode(data)
            origin, published = header.pop("i"), header.pop("p")
        except (ValueError, KeyError, TypeError):
            self._log.warn("foreign", f"broker: ignored a message on {self.channel} not from wsmon")
            return
        if origin == self.instance:
            # Our own, back: timed on our own clock, and not delivered twice.
            self._heard = perf_counter()
            self.metrics.delay.observe(self._heard - published)
            return
        if header.get("op") == HEARTBEAT_OP:
            return
        self.metrics.received.value += 1
        # Latency on this instance counts from here: another host's clock means nothing here.
        header["t"] = perf_counter()
        self._receive(header, body)

    def _down(self, what: str, exc: BaseException) -> None:
        self._log.warn(
            what,
            f"broker {shown(self.url)} unreachable ({what}): {exc}; deliveries to other"
            " instances are counted lost until it is back",
        )
