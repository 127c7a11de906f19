"""The listening sockets: accept each connection, pass it (SCM_RIGHTS) to the least-loaded worker.

Two listeners at most: the public one (`host`, `port`) and, with `metrics_listen`, the operations
one for /metrics and the health endpoints. Every connection goes through the gate (gate.py) and
is handed over with a message naming its listener and its client's address (control.PUBLIC).

A worker's load is the connections handed to it minus those it has reported closed
(Supervised.connection_ended): exact from the moment of hand-off, handshakes and plain HTTP
included, and a late report can only make a worker look busier. SO_REUSEPORT alone left one of 8
workers with 59 % more connections than another (measured before wsmon was written:
docs/performance.md).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Sequence

from wsmon import keepalive

from .caps import LOOSE, Tally
from .config import Settings, listen_address
from .control import OPERATIONS, PUBLIC
from .gate import Gate
from .metrics import Cell
from .pool import Slot

log = logging.getLogger(__name__)

ACCEPT_PAUSE = 0.1
# Per worker: past this its connections go to another worker, and with every worker's queue this
# long the supervisor holds its accepts (see Handoff._hold) until one is half empty again.
MAX_QUEUED_HANDOFFS = 4096
QUEUES_FULL = "every worker's hand-off queue is full"


class ListenError(OSError):
    """A port cannot be bound: reported before any worker starts. `address` names which, and
    `host_flag` and `port_flag` the flags that set it."""

    def __init__(self, address: str, cause: OSError, host_flag: str, port_flag: str) -> None:
        super().__init__(cause.errno, cause.strerror or str(cause))
        self.address = address
        self.host_flag, self.port_flag = host_flag, port_flag


class Handoff:
    def __init__(
        self,
        settings: Settings,
        slots: Sequence[Slot],
        addresses: Tally,
        no_worker: Cell,
        refused: dict[str, Cell],
    ) -> None:
        self.settings = settings
        self.slots = slots
        self.addresses = addresses
        self._no_worker = no_worker  # connections no worker could take
        self._gate = Gate(
            settings.handshake_rate_limit,
            settings.handshake_timeout_seconds,
            addresses,
            refused,
            self._hand_off,
            (self._hold, self._let_go),
        )
        self._listeners: dict[bytes, socket.socket] = {}
        self._closed = False
        self._held: set[str] = set()  # why accepts are held (none: accepting)

    def listen(self) -> None:
        """Bind the public port, and the operations one when configured (or ListenError)."""
        settings = self.settings
        public = f"{settings.host}:{settings.port}"
        self._listeners[PUBLIC] = _bound(settings.host, settings.port, public, "--host", "--port")
        if settings.metrics_listen:
            host, port = listen_address(settings.metrics_listen)
            flag = "--metrics-listen"
            self._listeners[OPERATIONS] = _bound(host, port, settings.metrics_listen, flag, flag)

    def address(self, listener: bytes = PUBLIC) -> tuple[str, int] | None:
        """Where `listener` listens (None: not configured)."""
        sock = self._listeners.get(listener)
        if sock is None:
            return None
        host, port = sock.getsockname()[:2]
        return host, port

    def start(self) -> None:
        """Begin accepting (once the workers can take connections)."""
        for tag, sock in self._listeners.items():
            asyncio.get_running_loop().add_reader(sock.fileno(), self._accept, tag)

    def _hold(self, why: str) -> None:
        """Stop accepting until `_let_go(why)`. Under a storm (every client of a deploy coming
        back at once) the supervisor accepts far faster than the workers complete handshakes;
        past what its queues take, a connection it accepted would have to be refused, while one
        it leaves in the kernel's backlog is only delayed (its SYN is retried): 10,000 at once
        refused a few hundred before this (docs/performance.md, the storm section)."""
        if not self._held and not self._closed:
            log.warning("holding new connections in the kernel's backlog: %s", why)
            for sock in self._listeners.values():
                asyncio.get_running_loop().remove_reader(sock.fileno())
        self._held.add(why)

    def _let_go(self, why: str) -> None:
        if why not in self._held:
            return
        self._held.discard(why)
        if not self._held and not self._closed:
            log.info("accepting new connections again")
            self.start()

    def close(self) -> None:
        """Stop accepting for good: the pool is draining."""
        self._closed = True
        self._gate.close()
        for sock in self._listeners.values():
            asyncio.get_running_loop().remove_reader(sock.fileno())
            sock.close()

    def release(self, slot: Slot) -> None:
        """A worker died: what was queued for it is closed, and its clients retry."""
        if slot.handoff is not None:
            asyncio.get_running_loop().remove_writer(slot.handoff.fileno())
        while slot.queued:
            slot.queued.popleft()[0].close()
            self._no_worker.value += 1

    def _accept(self, tag: bytes) -> None:
        listener = self._listeners[tag]
        while True:
            try:
                conn, peer = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                # Out of file descriptors (EMFILE/ENFILE) and the like: keep serving what is open
                # and try accepting again shortly, rather than spinning on a readable socket.
                log.error("accept failed: %s; pausing accepts for %.1fs", exc, ACCEPT_PAUSE)
                loop = asyncio.get_running_loop()
                loop.remove_reader(listener.fileno())
                loop.call_later(ACCEPT_PAUSE, self._resume_accepting, tag)
                return
            self._tune(conn)
            self._gate.admit(conn, peer[0], tag)
            if self._held:
                return

    def _resume_accepting(self, tag: bytes) -> None:
        if not self._closed and not self._held:
            asyncio.get_running_loop().add_reader(self._listeners[tag].fileno(), self._accept, tag)

    def _tune(self, conn: socket.socket) -> None:
        """No Nagle delay; TCP keepalive finds peers that vanished without a close (1006)."""
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.settings.keepalive_seconds:
            keepalive.enable(conn, self.settings.keepalive_seconds)

    def _hand_off(self, conn: socket.socket, address: str, listener: bytes) -> None:
        """Pass the connection to the least-loaded worker, queueing it if that worker's hand-off
        socket is full (its send buffer holds a few hundred descriptors)."""
        # The gate claimed the public listener's connections for their address (caps.py).
        claimed = listener == PUBLIC and self.addresses.enabled
        message = listener + address.encode()
        alive = sorted((s for s in self.slots if s.alive), key=lambda s: s.load)
        if not alive:
            conn.close()
            if claimed:
                self.addresses.release(address, LOOSE)
            self._no_worker.value += 1
            log.warning("no worker could take a connection; closed it")
            return
        # The least-loaded worker with room; with none, the least-loaded all the same (accepts
        # are held from here on, so the queues grow by no more than what is in flight).
        slot = next((s for s in alive if len(s.queued) < MAX_QUEUED_HANDOFFS), alive[0])
        if not slot.queued and self._send_fd(slot, conn, message):
            conn.close()
        else:
            slot.queued.append((conn, message))
            if len(slot.queued) == 1:
                handoff = slot.handoff
                assert handoff is not None
                asyncio.get_running_loop().add_writer(handoff.fileno(), self._flush, slot)
        slot.handed += 1
        if claimed:
            self.addresses.move(address, LOOSE, slot.index)
        # Looked at only when this worker's queue has just filled: the common case costs nothing.
        if (
            len(slot.queued) >= MAX_QUEUED_HANDOFFS
            and QUEUES_FULL not in self._held
            and all(len(s.queued) >= MAX_QUEUED_HANDOFFS for s in alive)
        ):
            self._hold(QUEUES_FULL)
            asyncio.get_running_loop().call_later(ACCEPT_PAUSE, self._room_again)

    def _room_again(self) -> None:
        """Accept again once a live worker's queue is half empty (checked as queues drain, and
        every ACCEPT_PAUSE while held, for a worker that died or started meanwhile)."""
        if QUEUES_FULL not in self._held:
            return
        if any(s.alive and len(s.queued) < MAX_QUEUED_HANDOFFS // 2 for s in self.slots):
            self._let_go(QUEUES_FULL)
        else:
            asyncio.get_running_loop().call_later(ACCEPT_PAUSE, self._room_again)

    def _send_fd(self, slot: Slot, conn: socket.socket, message: bytes) -> bool:
        """False when the worker's queue is full; a dead worker's connections are dropped."""
        assert slot.handoff is not None
        try:
            socket.send_fds(slot.handoff, [message], [conn.fileno()])
        except BlockingIOError:
            return False
        except OSError as exc:  # the worker died; release() closes what it had queued
            log.warning("hand-off to worker %d failed: %s", slot.index, exc)
            self._no_worker.value += 1
        return True

    def _flush(self, slot: Slot) -> None:
        try:
            while slot.queued:
                conn, message = slot.queued[0]
                if not self._send_fd(slot, conn, message):
                    return
                slot.queued.popleft()
                conn.close()
            assert slot.handoff is not None
            asyncio.get_running_loop().remove_writer(slot.handoff.fileno())
        finally:
            if self._held and len(slot.queued) < MAX_QUEUED_HANDOFFS // 2:
                self._room_again()


def _bound(host: str, port: int, shown: str, host_flag: str, port_flag: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((host, port))
        listener.listen(4096)
    except OSError as exc:
        listener.close()
        raise ListenError(shown, exc, host_flag, port_flag) from None
    listener.setblocking(False)
    return listener
