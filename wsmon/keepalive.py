"""TCP keepalive as wsmon sets it on every accepted connection: how a peer that vanished without a
close is found (the server would otherwise hold it, and count it, for ever).

In the core because the server (exporter/handoff.py) and the benchmark's bare aiohttp baseline
(loadgen/bench/baselines.py) must probe alike for the 100,000-connection section to compare like
with like: at that scale the kernel's probes are work of their own (docs/performance.md).
"""

from __future__ import annotations

import socket

DEFAULT_SECONDS = 30  # idle seconds before the first probe: a vanished peer is closed within 60 s
PROBES = 3  # unanswered probes before the kernel closes the connection


def enable(sock: socket.socket, idle: int) -> None:
    """Probe `sock`'s peer after `idle` silent seconds, then every third of that, and close the
    connection after PROBES unanswered. On a listening socket, every connection it accepts
    inherits these (Linux)."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, idle)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, max(1, idle // 3))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, PROBES)
