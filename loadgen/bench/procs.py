"""Servers under test as processes, and what /proc says they spent: CPU time and resident memory.

CPU is the scheduler's run time of every thread in the server's process tree (wsmon's supervisor
and workers), read before and after a run; on two cores the client competes with the server, so
CPU per message is a truer measure of server cost than messages per second.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


def free_port() -> int:
    """A port nothing listens on right now (the OS's choice, released for the caller)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def even_shares(total: int, parts: int) -> list[int]:
    """`total` split into `parts` as evenly as integers allow, the larger shares first: how the
    bench deals connections out to client processes or servers."""
    return [total // parts + (index < total % parts) for index in range(parts)]


def children(pid: int) -> list[int]:
    """The pids of `pid`'s direct children."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            found.extend(int(child) for child in task.read_text().split())
    return found


def tree(pid: int) -> list[int]:
    pids, queue = [], [pid]
    while queue:
        current = queue.pop()
        pids.append(current)
        queue.extend(children(current))
    return pids


def cpu_seconds(pids: list[int]) -> float:
    """CPU time of every thread of these processes, from /proc/PID/task/TID/schedstat: the
    scheduler's nanosecond count (the utime + stime of /proc/PID/stat have 10 ms ticks, too coarse
    for a 4 s run)."""
    total = 0
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").glob("*/schedstat"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                total += int(task.read_text().split()[0])
    return total / 1e9


def context_switches(pids: list[int]) -> int:
    """Voluntary context switches of these processes' threads (/proc/PID/status): how often they
    went to sleep waiting for work, each sleep a wake-up to pay for."""
    total = 0
    for pid in pids:
        for task in Path(f"/proc/{pid}/task").glob("*/status"):
            with contextlib.suppress(OSError, ValueError):
                for line in task.read_text().splitlines():
                    if line.startswith("voluntary_ctxt_switches:"):
                        total += int(line.split()[1])
    return total


def cpu_columns() -> list[int]:
    """The machine's CPU time since boot from /proc/stat's first line, in clock ticks, by kind:
    user, nice, system, idle, iowait, irq, softirq, steal (guest time is counted in user)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    return [int(value) for value in fields[:8]]


def cpu_ticks() -> tuple[int, int]:
    """All of the machine's CPU time since boot, and the part stolen by the hypervisor, in clock
    ticks. Steal is time this VM was ready to run and another was run instead: figures measured
    while it is high read slow for reasons outside the run."""
    fields = cpu_columns()
    return sum(fields), fields[7]


def softirq_seconds() -> float:
    """CPU seconds every core has spent in softirqs since boot: where the kernel runs its TCP
    timers and loopback deliveries, stalling whichever process that core was running."""
    return cpu_columns()[6] / os.sysconf("SC_CLK_TCK")


def backlog_drops(softnet_stat: Path = Path("/proc/net/softnet_stat")) -> int:
    """Packets the kernel dropped since boot because a core's input backlog was full (the
    second column of softnet_stat, in hex, a line per core; the backlog's length is
    net.core.netdev_max_backlog). Every packet between two processes on one host (loopback, or a
    container's veth) passes through it: a burst of keepalive probes longer than it loses the
    rest."""
    lines = softnet_stat.read_text().splitlines()
    return sum(int(line.split()[1], 16) for line in lines)


def netdev_max_backlog() -> int:
    """net.core.netdev_max_backlog: packets a core's input backlog holds."""
    return int(Path("/proc/sys/net/core/netdev_max_backlog").read_text())


def stolen(before: tuple[int, int], after: tuple[int, int]) -> float | None:
    """Per cent of the machine's CPU time stolen between two cpu_ticks() readings."""
    total = after[0] - before[0]
    return 100 * (after[1] - before[1]) / total if total > 0 else None


def rss_bytes(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_BYTES
    return total


@dataclass
class Server:
    """One server under test; `processes` lists every process that serves (not the launcher)."""

    name: str
    url: str
    launched: list[subprocess.Popen[bytes]]

    @property
    def processes(self) -> list[int]:
        return [pid for proc in self.launched for pid in tree(proc.pid)]

    def cpu(self) -> float:
        return cpu_seconds(self.processes)

    def rss(self) -> int:
        return rss_bytes(self.processes)

    def stop(self) -> None:
        for proc in self.launched:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        for proc in self.launched:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def supervisor_pids(server: Server) -> list[int]:
    """wsmon's supervisor (the process launched; the workers are its children), to count apart;
    none for a bare server."""
    return [server.launched[0].pid] if server.name.startswith("wsmon") else []


def _wait_for_port(port: int, launched: list[subprocess.Popen[bytes]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in launched:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listened on port {port} within {timeout:.0f}s")


def settle(server: Server, window: float = 0.2, busy: float = 0.005, timeout: float = 30) -> Server:
    """Wait until the server's processes are idle (under `busy` CPU seconds in a `window`).

    The port answers before wsmon's workers have finished starting: a two-worker pool went on
    to spend 663-832 ms of CPU after it did, 66-239 ms of it later than 0.3 s after. A
    measurement begun then charged that start-up to the messages of the run, a few per cent of a
    ping-pong run's CPU, more or less as the scheduler had it, run by run. A server that never
    goes quiet is stopped (the caller gets no Server to stop) and named in the error.
    """
    deadline = time.monotonic() + timeout
    before = server.cpu()
    while time.monotonic() < deadline:
        time.sleep(window)
        now = server.cpu()
        if now - before < busy:
            return server
        before = now
    server.stop()
    raise RuntimeError(f"{server.name} was still busy {timeout:.0f}s after it began listening")


def start_baseline(kind: str, processes: int = 1, keepalive: int = 0) -> Server:
    """A bare echo server; several processes share the port with SO_REUSEPORT. With `keepalive`
    (bare aiohttp only), its connections get TCP keepalive after that many idle seconds."""
    port = free_port()
    command = [
        sys.executable,
        "-P",
        "-m",
        "wsmon.loadgen.bench.baselines",
        kind,
        "--port",
        str(port),
    ]
    if processes > 1:
        command.append("--reuse-port")
    if keepalive:
        command += ["--keepalive", str(keepalive)]
    launched = [subprocess.Popen(command) for _ in range(processes)]
    _wait_for_port(port, launched, 15)
    time.sleep(0.3)  # every process of a reuse-port group has bound, not just the first
    return settle(
        Server(
            f"bare {kind}"
            + (f" x{processes}" if processes > 1 else "")
            + (f", keepalive {keepalive} s" if keepalive else ""),
            f"ws://127.0.0.1:{port}/ws",
            launched,
        )
    )


def start_wsmon(workers: int, *extra: str) -> Server:
    """wsmon with its per-connection flood limit lifted: one ping-pong connection sends ~1,500
    messages a second, over the default limit of 1,000, and refusing them is not what we measure;
    and the per-address handshake limit off: 10,000 connections come from one address.
    """
    port = free_port()
    wsmon = Path(sys.executable).with_name("wsmon")
    command = [
        str(wsmon),
        "serve",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--log-level",
        "warning",
        "--rate-limit",
        "1000000",
        "--handshake-rate-limit",
        "0",
        "--no-auth",
        *extra,
    ]
    launched = [subprocess.Popen(command)]
    _wait_for_port(port, launched, 20)
    deadline = time.monotonic() + 20
    while len(tree(launched[0].pid)) < workers + 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    return settle(Server(f"wsmon --workers {workers}", f"ws://127.0.0.1:{port}/ws", launched))


@contextlib.contextmanager
def running(server: Server) -> Iterator[Server]:
    try:
        yield server
    finally:
        server.stop()


def fd_count(pids: list[int]) -> int:
    """Open file descriptors of these processes (/proc/PID/fd); a process gone counts 0."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            total += len(os.listdir(f"/proc/{pid}/fd"))
    return total


def start_redis() -> Server:
    """Debian's redis-server on 127.0.0.1 and a free port, persisting nothing: the broker between
    wsmon instances (`--broker`). Its one process is what `processes` and `cpu()` count."""
    port = free_port()
    command = [
        shutil.which("redis-server") or "/usr/bin/redis-server",
        *("--bind", "127.0.0.1", "--port", str(port)),
        *("--save", "", "--appendonly", "no", "--loglevel", "warning"),
    ]
    launched = [subprocess.Popen(command, stdout=subprocess.DEVNULL)]
    _wait_for_port(port, launched, 15)
    return Server("redis-server", f"redis://127.0.0.1:{port}/0", launched)


def redis_info(url: str, section: str) -> dict[str, str]:
    """`INFO section` of the Redis at `url` (redis://host:port/...), as its `key:value` lines."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 6379), 5) as conn:
        conn.sendall(f"INFO {section}\r\n".encode())
        reply = b""
        while b"\r\n" not in reply:
            reply += conn.recv(65536)
        head, _, body = reply.partition(b"\r\n")
        if not head.startswith(b"$"):
            raise RuntimeError(f"redis INFO {section}: unexpected answer {head[:80]!r}")
        length = int(head[1:])
        while len(body) < length:
            body += conn.recv(65536)
    info: dict[str, str] = {}
    for line in body[:length].decode().splitlines():
        key, colon, value = line.partition(":")
        if colon and not key.startswith("#"):
            info[key] = value
    return info
