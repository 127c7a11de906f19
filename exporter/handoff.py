"""The listening socket: accept each connection and pass it (SCM_RIGHTS) to the least-loaded worker.

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

from .config import Settings
from .gate import Gate
from .metrics import Cell
from .pool import Slot

log = logging.getLogger(__name__)

ACCEPT_PAUSE = 0.1
MAX_QUEUED_HANDOFFS = 4096  # per worker; past this its connections go elsewhere or are refused


class Handoff:
    def __init__(
        self, settings: Settings, slots: Sequence[Slot], no_worker: Cell, refused: dict[str, Cell]
    ) -> None:
        self.settings = settings
        self.slots = slots
        self._no_worker = no_worker  # connections no worker could take
        self._gate = Gate(
            settings.handshake_rate_limit,
            settings.handshake_timeout_seconds,
            refused,
            self._hand_off,
        )
        self._listener: socket.socket | None = None
        self._closed = False

    def listen(self) -> None:
        settings = self.settings
        family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((settings.host, settings.port))
        listener.listen(4096)
        listener.setblocking(False)
        self._listener = listener

    def address(self) -> tuple[str, int]:
        assert self._listener is not None
        host, port = self._listener.getsockname()[:2]
        return host, port

    def start(self) -> None:
        """Begin accepting (once the workers can take connections)."""
        assert self._listener is not None
        asyncio.get_running_loop().add_reader(self._listener.fileno(), self._accept)

    def close(self) -> None:
        """Stop accepting for good: the pool is draining."""
        self._closed = True
        self._gate.close()
        if self._listener is not None:
            asyncio.get_running_loop().remove_reader(self._listener.fileno())
            self._listener.close()

    def release(self, slot: Slot) -> None:
        """A worker died: what was queued for it is closed, and its clients retry."""
        if slot.handoff is not None:
            asyncio.get_running_loop().remove_writer(slot.handoff.fileno())
        while slot.queued:
            slot.queued.popleft().close()
            self._no_worker.value += 1

    def _accept(self) -> None:
        listener = self._listener
        assert listener is not None
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
                loop.call_later(ACCEPT_PAUSE, self._resume_accepting)
                return
            self._tune(conn)
            self._gate.admit(conn, peer[0])

    def _resume_accepting(self) -> None:
        if not self._closed:
            self.start()

    def _tune(self, conn: socket.socket) -> None:
        """No Nagle delay; TCP keepalive finds peers that vanished without a close (1006)."""
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        idle = self.settings.keepalive_seconds
        if idle:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, max(1, idle // 3))
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)

    def _hand_off(self, conn: socket.socket) -> None:
        """Pass the connection to the least-loaded worker, queueing it if that worker's hand-off
        socket is full (its send buffer holds a few hundred descriptors)."""
        for slot in sorted((s for s in self.slots if s.alive), key=lambda s: s.load):
            if len(slot.queued) >= MAX_QUEUED_HANDOFFS:
                continue
            if not slot.queued and self._send_fd(slot, conn):
                conn.close()
            else:
                slot.queued.append(conn)
                if len(slot.queued) == 1:
                    handoff = slot.handoff
                    assert handoff is not None
                    asyncio.get_running_loop().add_writer(handoff.fileno(), self._flush, slot)
            slot.handed += 1
            return
        conn.close()
        self._no_worker.value += 1
        log.warning("no worker could take a connection; closed it")

    def _send_fd(self, slot: Slot, conn: socket.socket) -> bool:
        """False when the worker's queue is full; a dead worker's connections are dropped."""
        assert slot.handoff is not None
        try:
            socket.send_fds(slot.handoff, [b"c"], [conn.fileno()])
        except BlockingIOError:
            return False
        except OSError as exc:  # the worker died; release() closes what it had queued
            log.warning("hand-off to worker %d failed: %s", slot.index, exc)
            self._no_worker.value += 1
        return True

    def _flush(self, slot: Slot) -> None:
        while slot.queued:
            if not self._send_fd(slot, slot.queued[0]):
                return
            slot.queued.popleft().close()
        assert slot.handoff is not None
        asyncio.get_running_loop().remove_writer(slot.handoff.fileno())
