"""Issue 14, item 1: a hundred thousand connections on one machine, server and clients together.

Both servers get the same number of processes (wsmon's workers, bare aiohttp's SO_REUSEPORT
group), enough that none needs more descriptors than one process may hold (the hard
RLIMIT_NOFILE: 20,000 on this project's machines, not to be raised). The clients are as many
processes, each on source addresses of its own in 127.0.0.0/8 (one address has 28,232 ephemeral
ports towards one server port), opening their share a few hundred at a time on plain sockets.
The server's resident memory is read before any connection, with half of them open and with
all of them open (what the second half adds is the cost of one more connection, without what
each process allocates once); then descriptors per process and, for wsmon, /metrics; then 1 in
`every` connections sends one echo a second on a fixed schedule, timed from its scheduled
moment to its reply.
"""

from __future__ import annotations

import math
import os
import resource
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from wsmon import keepalive
from wsmon.limits import SPARE

from .procs import (
    Server,
    backlog_drops,
    cpu_seconds,
    even_shares,
    fd_count,
    netdev_max_backlog,
    rss_bytes,
    running,
    softirq_seconds,
    start_baseline,
    start_wsmon,
    supervisor_pids,
)
from .sections import (
    Figures,
    Section,
    bucket_bound,
    client,
    listen_drops,
    merged_histogram,
    metric_families,
    metric_values,
    next_line,
    percentile_of,
    result,
    scrape,
    spread,
    stop,
    summed_counts,
    tcp_extended,
)

SCRAPES = 30
# wsmon's default keepalive, for both servers: at 100,000 connections the kernel's keepalive
# probes are work of their own (docs/performance.md).
KEEPALIVE = keepalive.DEFAULT_SECONDS
# Source addresses per client process: a margin, not a measured need. connect() walks the
# address's ephemeral range for a free port, and ports left in TIME_WAIT by earlier runs slowed
# it; from fresh addresses, 10,000 connections opened as fast from one as from four
# (docs/performance.md has the figures and the command).
ADDRESSES_EACH = 4


def descriptor_limit() -> int:
    """The hard RLIMIT_NOFILE the servers inherit: how many connections one process may hold."""
    return resource.getrlimit(resource.RLIMIT_NOFILE)[1]


def processes_for(connections: int) -> int:
    """Server (and client) processes: each below three quarters of the descriptor limit, so a
    kernel hash that spreads 1.3x unevenly (bare aiohttp's SO_REUSEPORT) still fits under it."""
    return max(2, math.ceil(connections / (descriptor_limit() * 3 // 4)))


def tcp_memory_pages() -> int:
    """Pages the kernel's TCP stack holds for every socket (/proc/net/sockstat, TCP: mem)."""
    for line in Path("/proc/net/sockstat").read_text().splitlines():
        if line.startswith("TCP:"):
            fields = line.split()
            return int(fields[fields.index("mem") + 1])
    return 0


def tcp_memory_limits() -> list[int]:
    """net.ipv4.tcp_mem: low, pressure and high, in pages."""
    return [int(value) for value in Path("/proc/sys/net/ipv4/tcp_mem").read_text().split()]


@dataclass(frozen=True)
class Collections:
    """wsmon's garbage collections so far, all workers and generations (wsmon_gc_pause_seconds):
    how many took at most each bucket bound, and their seconds in all."""

    within: dict[float, float]
    seconds: float

    @classmethod
    def read(cls, url: str) -> Collections:
        name = "wsmon_gc_pause_seconds"
        found = metric_families(url, f"{name}_bucket", f"{name}_sum")
        within: dict[float, float] = {}
        for labels, count in found[f"{name}_bucket"].items():
            bound = bucket_bound(labels)
            within[bound] = within.get(bound, 0) + count
        return cls(within, sum(found[f"{name}_sum"].values()))

    def longest_since(self, before: Collections) -> float:
        """The bucket bound the longest collection since `before` stayed within (inf: over
        the last bound; 0: none at all)."""
        total = self.within[math.inf] - before.within.get(math.inf, 0)
        if not total:
            return 0.0
        # +Inf's bucket holds them all, so some bound always does.
        return next(
            bound
            for bound in sorted(self.within)
            if self.within[bound] - before.within.get(bound, 0) >= total
        )


def crowd_run(
    server: Server, connections: int, every: int, seconds: float, processes: int, block: int
) -> Figures:
    """One server's run; its clients connect from addresses 127.0.`block`.x, ADDRESSES_EACH
    a process, unused by the other run (ports left in TIME_WAIT would slow its connects)."""
    share = even_shares(connections, processes)
    sources = [
        ",".join(f"127.0.{block}.{1 + i * ADDRESSES_EACH + j}" for j in range(ADDRESSES_EACH))
        for i in range(processes)
    ]
    wsmon = server.name.startswith("wsmon")
    metrics_url = server.url.replace("ws://", "http://").replace("/ws", "/metrics")
    supervisor = supervisor_pids(server)
    time.sleep(0.5)
    rss_idle = {pid: rss_bytes([pid]) for pid in server.processes}
    fds_idle = {pid: fd_count([pid]) for pid in server.processes}
    cpu_before, supervisor_before = server.cpu(), cpu_seconds(supervisor)
    pauses_idle = Collections.read(metrics_url) if wsmon else Collections({}, 0.0)
    pauses_open = pauses_held = pauses_idle
    drops_before, started = listen_drops(), time.perf_counter()
    backlog_before = backlog_drops()
    procs: list[subprocess.Popen[bytes]] = []
    try:
        for n, source in zip(share, sources, strict=True):
            procs.append(
                client(
                    "crowd",
                    server,
                    n,
                    *("--sources", source, "--every", str(every)),
                    *("--rate", "1", "--duration", str(seconds)),
                )
            )
        halfway = [next_line(proc)["halfway"] for proc in procs]
        first_half = time.perf_counter() - started
        time.sleep(1.0)  # allocations settle
        rss_half = {pid: rss_bytes([pid]) for pid in server.processes}
        resumed = time.perf_counter()
        for proc in procs:
            proc.send_signal(signal.SIGUSR1)
        ready = [next_line(proc) for proc in procs]
        opened_in = first_half + time.perf_counter() - resumed
        connect_cpu = server.cpu() - cpu_before
        supervisor_cpu = cpu_seconds(supervisor) - supervisor_before
        time.sleep(1.0)
        rss_held = {pid: rss_bytes([pid]) for pid in server.processes}
        held = {pid: fd_count([pid]) - fds_idle.get(pid, 0) for pid in server.processes}
        tcp_pages = tcp_memory_pages()
        probes_open, softirq_open = tcp_extended("TCPKeepAlive")["TCPKeepAlive"], softirq_seconds()
        backlog_open = backlog_drops()
        times, size = [], 0
        if wsmon:
            pauses_open = Collections.read(metrics_url)
            for _ in range(SCRAPES):
                elapsed, size = scrape(metrics_url)
                times.append(elapsed)
            times.sort()
        for proc in procs:
            proc.send_signal(signal.SIGUSR1)
        parts = [next_line(proc) for proc in procs]
        probes_held = tcp_extended("TCPKeepAlive")["TCPKeepAlive"] - probes_open
        softirq_held = softirq_seconds() - softirq_open
        backlog_held = backlog_drops() - backlog_open
        load_rss = server.rss()
        if wsmon:
            pauses_held = Collections.read(metrics_url)
        for proc in procs:
            proc.terminate()
        for proc in procs:
            result(proc, timeout=60)
    finally:
        stop(procs)
    admitted = sum(r["ready"] for r in ready)
    failures = summed_counts(r["failures"] for r in ready)
    latencies = merged_histogram(part["histogram"] for part in parts)
    sent, answered = sum(p["sent"] for p in parts), sum(p["answered"] for p in parts)
    serving = {pid: n for pid, n in held.items() if pid not in supervisor}
    workers = [w for r in ready for w in (r["workers"] or [])]
    figures: Figures = {
        "connections": connections,
        "admitted": admitted,
        "failures": ", ".join(f"{k} {v}" for k, v in sorted(failures.items())) or "none",
        "s to open all": opened_in,
        "connects/s": admitted / opened_in,
        "KiB per idle connection": (sum(rss_held.values()) - sum(rss_half.values()))
        / max(admitted - sum(halfway), 1)
        / 1024,
        "KiB per connection from start": (sum(rss_held.values()) - sum(rss_idle.values()))
        / max(admitted, 1)
        / 1024,
        "server RSS MiB": sum(rss_held.values()) / 2**20,
        "RSS growth by process MiB": ", ".join(
            f"{(rss_held[pid] - rss_idle.get(pid, 0)) / 2**20:.1f}" for pid in rss_held
        ),
        "RSS under load MiB": load_rss / 2**20,
        "most descriptors in one process": max(fds_idle.get(p, 0) + n for p, n in held.items()),
        "spread": spread(workers)
        if wsmon
        else max(serving.values()) / max(1, min(serving.values())),
        "senders": sum(p["senders"] for p in parts),
        "sent": sent,
        "message success %": 100 * answered / sent if sent else None,
        "p50 ms": latencies.get_value_at_percentile(50) / 1000,
        "p99 ms": latencies.get_value_at_percentile(99) / 1000,
        "max ms": latencies.get_max_value() / 1000,
        "closed by server": sum(p["closed_by_server"] for p in parts),
        "client KiB per connection": sum(
            r["client_bytes_per_connection"] * r["ready"] for r in ready
        )
        / max(admitted, 1)
        / 1024,
        "server CPU s to connect": connect_cpu,
        "kernel TCP memory pages": tcp_pages,
        "keepalive probes held": probes_held,
        "softirq s held": softirq_held,
        "backlog drops opening": backlog_open - backlog_before,
        "backlog drops held": backlog_held,
        "accept-queue overflows": listen_drops()["ListenOverflows"]
        - drops_before["ListenOverflows"],
    }
    if wsmon:
        figures |= {
            "supervisor µs per connection": supervisor_cpu / max(admitted, 1) * 1e6,
            "workers µs per connection": (connect_cpu - supervisor_cpu) / max(admitted, 1) * 1e6,
            "/metrics p50 ms": percentile_of(times, 50),
            "/metrics p99 ms": percentile_of(times, 99),
            "/metrics bytes": size,
            "longest GC pause opening ms": 1000 * pauses_open.longest_since(pauses_idle),
            "GC s opening": pauses_open.seconds - pauses_idle.seconds,
            "longest GC pause held ms": 1000 * pauses_held.longest_since(pauses_open),
            "GC s held": pauses_held.seconds - pauses_open.seconds,
            "hand-off queue peak": ", ".join(
                f"{int(v)}"
                for _, v in sorted(metric_values(metrics_url, "wsmon_handoff_queued_max").items())
            ),
        }
    return figures


def crowd(connections: int, every: int = 100, seconds: float = 30) -> Section:
    """wsmon and bare aiohttp with the same number of processes, one run each, bare first."""
    processes = processes_for(connections)
    capacity = math.ceil(connections / processes * 1.1)
    section = Section(
        "crowd",
        f"{connections:,} connections, 1 in {every} sending one echo a second for {seconds:g} s;"
        f" {processes} server processes each, {processes} client processes on"
        f" {processes * ADDRESSES_EACH} source addresses; TCP keepalive after {KEEPALIVE} idle s",
        [
            "server",
            "admitted",
            "failures",
            "s to open all",
            "connects/s",
            "KiB per idle connection",
            "KiB per connection from start",
            "server RSS MiB",
            "most descriptors in one process",
            "spread",
            "message success %",
            "p50 ms",
            "p99 ms",
            "max ms",
            "/metrics p50 ms",
            "/metrics p99 ms",
            "longest GC pause opening ms",
            "GC s opening",
            "longest GC pause held ms",
            "GC s held",
            "keepalive probes held",
            "softirq s held",
            "backlog drops opening",
            "backlog drops held",
            "supervisor µs per connection",
            "workers µs per connection",
            "client KiB per connection",
        ],
    )
    rows: dict[str, Figures] = {}
    makers: list[tuple[str, Callable[[], Server]]] = [
        ("bare", lambda: start_baseline("aiohttp", processes, KEEPALIVE)),
        (
            "wsmon",
            lambda: start_wsmon(
                processes,
                *("--worker-capacity", str(capacity), "--keepalive-seconds", str(KEEPALIVE)),
            ),
        ),
    ]
    for block, (kind, make) in enumerate(makers, start=10):
        with running(make()) as server:
            rows[kind] = {
                "server": server.name,
                **crowd_run(server, connections, every, seconds, processes, block),
            }
            section.rows.append(rows[kind])
    ws, bare = rows["wsmon"], rows["bare"]
    section.target("wsmon connections refused", connections - ws["admitted"], 0)
    section.target("wsmon message success", ws["message success %"], 100, below=False, unit=" %")
    section.target("wsmon p99 of the senders' echoes", ws["p99 ms"], 50, unit=" ms")
    section.target(
        "wsmon memory per idle connection", ws["KiB per idle connection"], 16, unit=" KiB"
    )
    section.target(f"/metrics p99 at {connections:,}", ws["/metrics p99 ms"], 10, unit=" ms")
    section.target(
        "wsmon time to open all ÷ bare aiohttp's", ws["s to open all"] / bare["s to open all"], 1.25
    )
    pressure = tcp_memory_limits()[1]
    double = 2 * connections
    limit = descriptor_limit()
    memory_gib = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30
    section.note = (
        f"The next step, {double:,} connections, here: descriptors: the busiest wsmon process "
        f"held {ws['most descriptors in one process']:,} of {limit:,}, so "
        f"{math.ceil(double / (limit - SPARE))}+ workers (and as many client processes); "
        f"memory: {ws['server RSS MiB'] / 1024:.2f} GiB of server RSS and "
        f"{ws['client KiB per connection'] * connections / 2**20:.2f} GiB of clients for "
        f"{connections:,}, so about twice that of the machine's {memory_gib:.0f} GiB for "
        f"{double:,}; "
        f"the kernel: TCP held {ws['kernel TCP memory pages']:,} pages with every connection idle, "
        f"against tcp_mem's pressure mark of {pressure:,} (idle sockets hold almost none; queued "
        f"data does); ports: {math.ceil(connections / processes / ADDRESSES_EACH):,} a source "
        "address of 28,232. "
        "The hand-off: wsmon's supervisor spent "
        f"{ws['supervisor µs per connection']:.0f} µs of CPU a connection (its workers "
        f"{ws['workers µs per connection']:.0f} µs), so on one core of "
        f"its own it could hand off {1e6 / max(ws['supervisor µs per connection'], 1e-3):,.0f} "
        f"a second against the {ws['connects/s']:,.0f} a second the whole machine opened. "
        "KiB per idle connection is what the second half of the connections added to the "
        "server's RSS, over their number: the cost of one more connection. From start, the "
        "same over all of them from the server's RSS before any, which also counts what each "
        "process allocates once, on its first connections. The client's is its RSS growth over its "
        "connections. The longest GC pause is the bucket bound (wsmon_gc_pause_seconds) of the "
        "longest garbage collection in any wsmon worker, wall time (a worker waiting for a core "
        "counts): while the connections opened, and while they were held (the /metrics scrapes "
        "and the echoes); GC s, the collections' time in all, summed over the workers. Keepalive "
        "probes and softirq s are the kernel's while the connections were held (TcpExt "
        "TCPKeepAlive, /proc/stat): it fires a connection's keepalive timer with those of every "
        "other connection in the same slot of its timer wheel (2 s wide for a 30 s timer at "
        "HZ=250), and softirq work runs ahead of every process on its core. Backlog drops are "
        "the packets the kernel lost because a core's input backlog was full "
        "(/proc/net/softnet_stat; net.core.netdev_max_backlog, "
        f"{netdev_max_backlog():,} here): on loopback every probe and its answer pass through "
        "it, and a burst longer than it loses the rest. A connection whose probes go unanswered "
        "three times is reset by the kernel, healthy or not."
    )
    return section
