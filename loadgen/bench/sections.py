"""The benchmark's measurements, one function per section of the report.

Each returns a `Section`: rows of measured figures, and the target with its verdict where the issue
sets one. Baselines run in the same invocation, interleaved round by round with wsmon where a ratio
is reported, so that drift of the machine cancels out.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from hdrh.histogram import HdrHistogram  # type: ignore[import-untyped]
from websockets.sync.client import connect

from ..stats import HIGHEST_US, LOWEST_US, SIGNIFICANT_DIGITS
from .procs import (
    Server,
    cpu_columns,
    cpu_seconds,
    even_shares,
    fd_count,
    redis_info,
    running,
    settle,
    start_baseline,
    start_redis,
    start_wsmon,
    supervisor_pids,
)

Figures = dict[str, Any]
STOP_SECONDS = 10.0  # a client asked to stop (SIGTERM) gets this long before SIGKILL


@dataclass
class Section:
    key: str
    title: str
    columns: list[str]
    rows: list[Figures] = field(default_factory=list)
    targets: list[dict[str, Any]] = field(default_factory=list)
    note: str = ""
    # Share of the machine's CPU time the hypervisor took while the section ran (procs.stolen):
    # on a virtual machine, the noise a run had that the run itself cannot see.
    stolen_percent: float | None = None

    def target(
        self, name: str, measured: float | None, limit: float, below: bool = True, unit: str = ""
    ) -> None:
        met = measured is not None and (measured <= limit if below else measured >= limit)
        self.targets.append(
            {
                "target": f"{name} {'≤' if below else '≥'} {limit:g}{unit}",
                "measured": measured,
                "met": met,
            }
        )


def client(mode: str, server: Server, connections: int, *args: str) -> subprocess.Popen[bytes]:
    command = [
        sys.executable,
        "-P",
        "-m",
        "wsmon.loadgen.bench.clients",
        mode,
        server.url,
        "--connections",
        str(connections),
        *args,
    ]
    if server.name.startswith("wsmon"):
        command.append("--wsmon")
    return subprocess.Popen(command, stdout=subprocess.PIPE)


def result(proc: subprocess.Popen[bytes], timeout: float = 120) -> Figures:
    out, _ = proc.communicate(timeout=timeout)
    lines = out.decode().strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"benchmark client failed with exit code {proc.returncode}")
    figures: Figures = orjson.loads(lines[-1])
    return figures


def next_line(proc: subprocess.Popen[bytes]) -> Figures:
    """A client's next report line, read while it goes on running (holding its connections)."""
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        raise RuntimeError(f"benchmark client exited with code {proc.wait()} before reporting")
    figures: Figures = orjson.loads(line)
    return figures


def merged_histogram(encoded: Iterable[str]) -> Any:
    """One HdrHistogram of the client processes' encoded ones."""
    merged = HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)
    for part in encoded:
        merged.add(HdrHistogram.decode(part))
    return merged


def summed_counts(counts: Iterable[dict[str, int]]) -> dict[str, int]:
    """The client processes' counts by kind (failures), added up."""
    total: dict[str, int] = {}
    for part in counts:
        for kind, count in part.items():
            total[kind] = total.get(kind, 0) + count
    return total


def spread(workers: Sequence[int]) -> float | None:
    """max/min connections per worker (None when a worker got none, or for bare servers)."""
    if not workers:
        return None
    counts = [workers.count(index) for index in range(max(workers) + 1)]
    return max(counts) / min(counts) if min(counts) else float("inf")


def pingpong(server: Server, connections: int, seconds: float) -> tuple[float, float, float | None]:
    """Closed-loop echo: messages a second, server CPU µs per message, worker spread."""
    before = server.cpu()
    figures = result(client("pingpong", server, connections, "--duration", str(seconds)))
    spent = server.cpu() - before
    messages = figures["messages"]
    return messages / figures["seconds"], spent / messages * 1e6, spread(figures["workers"] or [])


# 1 --------------------------------------------------------------------------------------------


def echo_cost(rounds: int, seconds: float, connections: int = 50) -> Section:
    section = Section(
        "echo_cost",
        f"Echo cost: {connections} ping-pong connections, "
        f"{seconds:g} s a run, {rounds} rounds in turn (the order reversed every other round)",
        ["server", "msg/s", "server CPU µs/msg", "ratio to bare aiohttp"],
    )
    makers: list[tuple[str, Callable[[], Server]]] = [
        ("bare aiohttp", lambda: start_baseline("aiohttp")),
        ("bare websockets", lambda: start_baseline("websockets")),
        ("wsmon /ws echo, 1 worker, metrics on", lambda: start_wsmon(1)),
    ]
    servers = [(name, make()) for name, make in makers]
    runs: dict[str, list[tuple[float, float]]] = {name: [] for name, _ in servers}
    try:
        # In turn, the order reversed every other round: the machine drifts within a round
        # (bare aiohttp's three runs once read 12.0, 14.2 and 17.0 µs), and the server always
        # run last took the drift.
        for number in range(rounds):
            for name, server in servers if number % 2 == 0 else servers[::-1]:
                rate, cost, _ = pingpong(server, connections, seconds)
                runs[name].append((rate, cost))
    finally:
        for _, server in servers:
            server.stop()
    baseline = statistics.median(cost for _, cost in runs["bare aiohttp"])
    for name, _ in servers:
        rate = statistics.median(r for r, _ in runs[name])
        cost = statistics.median(c for _, c in runs[name])
        section.rows.append(
            {
                "server": name,
                "msg/s": rate,
                "server CPU µs/msg": cost,
                "ratio to bare aiohttp": cost / baseline,
                "runs": runs[name],
            }
        )
    section.target(
        "wsmon CPU per echo ÷ bare aiohttp", section.rows[-1]["ratio to bare aiohttp"], 1.10
    )
    return section


# One process each: bare aiohttp, and wsmon's pool of one worker (and its supervisor).
SINGLE: list[tuple[str, Callable[[], Server]]] = [
    ("bare aiohttp", lambda: start_baseline("aiohttp")),
    ("wsmon --workers 1", lambda: start_wsmon(1)),
]
# Two processes on one port for each: bare aiohttp with SO_REUSEPORT, wsmon's pool.
PAIRED: list[tuple[str, Callable[[], Server]]] = [
    ("bare aiohttp x2", lambda: start_baseline("aiohttp", 2)),
    ("wsmon --workers 2", lambda: start_wsmon(2)),
]

# 2 and 4 --------------------------------------------------------------------------------------


def open_model(
    server: Server, connections: int, rate: float, seconds: float, processes: int = 2
) -> Figures:
    """Open-model echo load from `processes` client processes; their histograms are merged."""
    share = even_shares(connections, processes)
    procs = [
        client(
            "open", server, n, "--rate", str(rate), "--duration", str(seconds), "--seed", str(i + 1)
        )
        for i, n in enumerate(share)
    ]
    parts = [result(proc, timeout=seconds + 120) for proc in procs]
    merged = merged_histogram(part["histogram"] for part in parts)
    sent = sum(p["sent"] for p in parts)
    answered = sum(p["answered"] for p in parts)
    opened = sum(p["connections"] for p in parts)
    workers = [w for p in parts for w in (p["workers"] or [])]
    return {
        "connections": connections,
        "offered msg/s": connections * rate,
        "connection success %": 100 * opened / connections,
        "message success %": 100 * answered / sent if sent else None,
        "p50 ms": merged.get_value_at_percentile(50) / 1000,
        "p99 ms": merged.get_value_at_percentile(99) / 1000,
        "max ms": merged.get_max_value() / 1000,
        "worker spread": spread(workers),
    }


def open_latency(rates: Sequence[int], connections: int, seconds: float) -> Section:
    section = Section(
        "open_latency",
        f"Open-model latency: {connections} connections, fixed "
        f"offered rates, {seconds:g} s each, 2 client processes",
        ["server", "offered msg/s", "message success %", "p50 ms", "p99 ms"],
    )
    best: dict[str, int] = {}
    for name, make in PAIRED:
        with running(make()) as server:
            for total in rates:
                figures = open_model(server, connections, total / connections, seconds)
                section.rows.append({"server": name, **figures})
                if figures["p99 ms"] < 50 and figures["message success %"] == 100:
                    best[name] = max(best.get(name, 0), total)
    section.note = "; ".join(
        f"{name}: highest offered rate with p99 < 50 ms: {best.get(name, 0)} msg/s"
        for name in ("bare aiohttp x2", "wsmon --workers 2")
    )
    return section


def many_connections(sizes: Sequence[int], seconds: float, rounds: int) -> Section:
    """At the largest size the tail is the machine's (garbage collection, two shared cores) and
    moves from run to run, so the servers take turns for `rounds` runs and the run with the
    median p99 stands for each."""
    section = Section(
        "many_connections",
        f"Connections at 1 message/s each, {seconds:g} s, 2 client processes"
        f" ({rounds} alternating runs at {max(sizes)}, the median p99 run shown)",
        [
            "server",
            "connections",
            "connection success %",
            "message success %",
            "p50 ms",
            "p99 ms",
            "max ms",
            "p99 of each run",
        ],
    )
    largest = max(sizes)
    runs: dict[tuple[str, int], list[Figures]] = {}
    for size in sizes:
        for _ in range(rounds if size == largest else 1):
            for name, make in PAIRED:
                with running(make()) as server:
                    runs.setdefault((name, size), []).append(open_model(server, size, 1.0, seconds))
    results: dict[tuple[str, int], Figures] = {}
    for (name, size), figures in runs.items():
        ordered = sorted(figures, key=lambda run: run["p99 ms"])
        results[(name, size)] = ordered[len(ordered) // 2]
        section.rows.append(
            {
                "server": name,
                **results[(name, size)],
                "p99 of each run": ", ".join(f"{run['p99 ms']:g}" for run in figures),
            }
        )
    wsmon, bare = results[("wsmon --workers 2", largest)], results[("bare aiohttp x2", largest)]
    section.target(
        f"wsmon p99 ÷ bare p99 at {largest}",
        wsmon["p99 ms"] / max(bare["p99 ms"], 0.001),
        1.2,
    )
    section.target(
        f"wsmon message success at {largest}",
        wsmon["message success %"],
        100,
        below=False,
        unit=" %",
    )
    if 5000 in sizes:
        section.target(
            "wsmon p99 at 5000", results[("wsmon --workers 2", 5000)]["p99 ms"], 20, unit=" ms"
        )
    return section


# 3, 5 and 6 -----------------------------------------------------------------------------------


@dataclass
class Held:
    """Client processes holding connections open: `ready` has each one's first line (when every
    connection was open), `finished` its last (once the `holding` block has ended)."""

    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    ready: list[Figures] = field(default_factory=list)
    finished: list[Figures] = field(default_factory=list)


@contextlib.contextmanager
def holding(
    server: Server, connections: int, mode: str = "hold", processes: int = 2
) -> Iterator[Held]:
    """Open idle connections from `processes` clients (mode "hold", or "listen" to time
    broadcasts); the block runs once every client is ready. When it ends the clients close their
    connections and report (`finished`); whatever fails, in the block or here, no client process
    outlives it."""
    share = even_shares(connections, processes)
    held = Held()
    try:
        for n in share:
            held.procs.append(client(mode, server, n))
        for proc in held.procs:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line:
                raise RuntimeError(
                    f"benchmark client ({mode}) exited with code {proc.wait()} before it was ready"
                )
            held.ready.append(orjson.loads(line))
        yield held
        held.finished = release(held.procs)
    finally:
        stop(held.procs)


def release(procs: list[subprocess.Popen[bytes]]) -> list[Figures]:
    """Ask the clients to close their connections (SIGTERM) and read what each reports."""
    for proc in procs:
        proc.terminate()
    return [result(proc) for proc in procs]


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    """End and reap any of the clients still running: SIGTERM, then SIGKILL after STOP_SECONDS.
    Their output is drained meanwhile, so a client writing a long report cannot block on it."""
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.communicate(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def idle_memory(connections: int) -> Section:
    section = Section(
        "idle_memory",
        f"{connections} idle connections: memory and connect rate",
        ["server", "connected", "KiB per connection", "connects/s"],
    )
    for name, make in SINGLE:
        with running(make()) as server:
            time.sleep(0.5)
            before = server.rss()
            with holding(server, connections) as held:
                time.sleep(1.0)  # let allocations settle
                after = server.rss()
        ready = held.ready
        connected = sum(r["ready"] for r in ready)
        section.rows.append(
            {
                "server": name,
                "connected": connected,
                "KiB per connection": (after - before) / max(connected, 1) / 1024,
                "connects/s": connected / max(r["connect_seconds"] for r in ready),
            }
        )
    section.target(
        "wsmon memory per idle connection", section.rows[-1]["KiB per connection"], 16, unit=" KiB"
    )
    return section


def send_floor(sockets: int, rounds: int = 40, frame_bytes: int = 100) -> list[float]:
    """What the kernel alone charges: one process writing one frame to each of `sockets` loopback
    TCP sockets with plain socket.send, `rounds` times (ms each, sorted). On loopback the sender
    also pays for the receiving side of TCP, so this is the floor under any server's fan-out, and
    its spread from round to round is the machine's, for the very same work."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(sockets)
        address = listener.getsockname()
        pairs = []
        try:
            for _ in range(sockets):
                client_side = socket.create_connection(address)
                server_side, _ = listener.accept()
                server_side.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                pairs.append((client_side, server_side))
            frame = b"\x81\x7e" + (frame_bytes - 4).to_bytes(2, "big") + b"x" * (frame_bytes - 4)
            times = []
            for _ in range(rounds):
                started = time.perf_counter()
                for _, server_side in pairs:
                    server_side.send(frame)
                times.append((time.perf_counter() - started) * 1000)
                for client_side, _ in pairs:
                    client_side.recv(4096)
        finally:
            for client_side, server_side in pairs:
                client_side.close()
                server_side.close()
    return sorted(times)


# Scrapes of /metrics at 10,000 connections: of 200 the p99 is the second slowest, where of 50 it
# was the slowest, whatever one stall of a two-core machine made it; the slowest is reported too.
METRICS_SCRAPES = 200


def scrape(url: str) -> tuple[float, int]:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=10) as response:
        size = len(response.read())
    return (time.perf_counter() - started) * 1000, size


def broadcast_and_scrape(connections: int, broadcasts: int) -> list[Section]:
    fanout = Section(
        "broadcast",
        f"Broadcast to {connections} connections (wsmon --workers 2)",
        ["measured at", "broadcasts", "p50 ms", "p99 ms", "max ms"],
    )
    metrics = Section(
        "metrics_scrape",
        f"/metrics with {connections} connections, every worker asked fresh",
        ["scrapes", "p50 ms", "p99 ms", "max ms", "bytes"],
    )
    floor = send_floor(connections // 2)
    with (
        running(start_wsmon(2)) as server,
        holding(server, connections, mode="listen") as held,
    ):
        metrics_url = server.url.replace("ws://", "http://").replace("/ws", "/metrics")
        procs, ready = held.procs, held.ready
        connected = sum(r["ready"] for r in ready)
        # Scraped settled, as every server is measured: each worker freezes what it holds a
        # moment after its last connection arrived (exporter/heap.py), and scrapes begun at once
        # met it (`--only broadcast`: p99 of 50 unsettled 10.3-38.3 ms, of 200 settled 2.93-5.33).
        settle(server)
        times, size = [], 0
        for _ in range(METRICS_SCRAPES):
            elapsed, size = scrape(metrics_url)
            times.append(elapsed)
        listeners = [proc.pid for proc in procs]
        # CPU each broadcast cost, sender and recipients, read around each one (it is over well
        # within the pause after it): on 2 cores no fan-out can finish sooner than half their sum.
        spent: list[tuple[float, float]] = []
        with connect(server.url, compression=None) as sender:
            sender.recv()  # welcome
            for number in range(broadcasts):
                server_cpu, client_cpu = server.cpu(), cpu_seconds(listeners)
                payload = {"t": time.perf_counter(), "n": number}
                sender.send(
                    orjson.dumps({"type": "broadcast", "id": number, "payload": payload}).decode()
                )
                sender.recv()  # ack
                time.sleep(0.3)
                spent.append(
                    (
                        (server.cpu() - server_cpu) * 1000,
                        (cpu_seconds(listeners) - client_cpu) * 1000,
                    )
                )
        time.sleep(1.0)
        server_side = _histogram_from_metrics(
            metrics_url, "wsmon_broadcast_duration_seconds", 'type="broadcast"'
        )
    finished = held.finished  # the listeners' arrivals, reported once they were released
    arrivals: dict[int, list[float]] = {}
    for part in finished:
        for number, values in part["arrivals"].items():
            arrivals.setdefault(int(number), []).extend(values)
    done = {number: max(values) * 1000 for number, values in arrivals.items()}
    complete = sorted(done.values())
    delivered = sum(len(values) for values in arrivals.values())
    server_ms = sorted(cost for cost, _ in spent)
    client_ms = sorted(cost for _, cost in spent)
    # Each broadcast against the CPU it cost: how near the two cores' floor its scheduling came,
    # whatever that broadcast's work came to.
    own_bound = sorted(
        done[number] / ((cost + listening) / 2)
        for number, (cost, listening) in enumerate(spent)
        if number in done
    )
    fanout.rows.append(
        {
            "measured at": f"clients (last of {connected} recipients)",
            "broadcasts": len(complete),
            "p50 ms": percentile_of(complete, 50),
            "p99 ms": percentile_of(complete, 99),
            "max ms": max(complete, default=None),
            "delivered": delivered,
            "expected": connected * broadcasts,
        }
    )
    fanout.rows.append(
        {
            "measured at": "server (wsmon_broadcast_duration_seconds, per worker)",
            "broadcasts": broadcasts,
            **server_side,
        }
    )
    for measured_at, costs in (
        ("CPU per broadcast: wsmon (both workers and the supervisor)", server_ms),
        ("CPU per broadcast: the listening clients", client_ms),
    ):
        fanout.rows.append(
            {
                "measured at": measured_at,
                "broadcasts": len(costs),
                "p50 ms": percentile_of(costs, 50),
                "p99 ms": percentile_of(costs, 99),
                "max ms": max(costs, default=None),
            }
        )
    fanout.rows.append(
        {
            "measured at": f"floor: plain socket.send of one frame to {connections // 2} "
            "loopback sockets (one worker's share), no server; rounds",
            "broadcasts": len(floor),
            "p50 ms": percentile_of(floor, 50),
            "p99 ms": percentile_of(floor, 99),
            "max ms": max(floor),
        }
    )
    server_mean = statistics.fmean(server_ms) if server_ms else 0.0
    client_mean = statistics.fmean(client_ms) if client_ms else 0.0
    bound = (server_mean + client_mean) / 2
    p99 = percentile_of(complete, 99)
    server_spread = _tail_ratio(server_ms)
    floor_spread = _tail_ratio(floor)
    follows = (
        statistics.correlation([done[n] for n in sorted(done)], [spent[n][0] for n in sorted(done)])
        if len(done) > 2
        else None
    )
    fanout.note = (
        f"CPU per broadcast, mean: wsmon {server_mean:.1f} ms (both workers and "
        f"the supervisor), listening clients {client_mean:.1f} ms; on 2 cores no "
        f"fan-out can finish in less than half their sum, {bound:.1f} ms. The p99 of "
        f"{len(complete)} broadcasts is the "
        f"{'largest' if len(complete) < 100 else 'second largest'} of them. "
        "The same broadcast does not cost the same CPU each time: wsmon's p99 ÷ p50 of it is "
        f"{_ratio_text(server_spread)}, the kernel floor's (one plain process sending the same "
        f"frame to {connections // 2} sockets, round after round) {_ratio_text(floor_spread)}; "
        "the time each broadcast took follows wsmon's CPU "
        f"for it (correlation {_ratio_text(follows)}). Each broadcast ÷ half the CPU it cost: "
        f"p50 {_ratio_text(percentile_of(own_bound, 50))}, "
        f"p99 {_ratio_text(percentile_of(own_bound, 99))}."
    )
    fanout.target("p99 fan-out as clients observe it", p99, 50, unit=" ms")
    fanout.target("p99 fan-out ÷ that CPU bound", p99 / bound if p99 and bound else None, 1.25)
    fanout.target(
        "p99 of each broadcast ÷ half the CPU it cost", percentile_of(own_bound, 99), 1.25
    )
    times.sort()
    metrics.rows.append(
        {
            "scrapes": len(times),
            "p50 ms": percentile_of(times, 50),
            "p99 ms": percentile_of(times, 99),
            "max ms": times[-1],
            "bytes": size,
        }
    )
    metrics.target("p99 /metrics scrape", percentile_of(times, 99), 10, unit=" ms")
    return [fanout, metrics]


def _tail_ratio(ordered: Sequence[float]) -> float | None:
    """p99 ÷ p50 of sorted figures: how much dearer the tail is than the middle."""
    middle, tail = percentile_of(ordered, 50), percentile_of(ordered, 99)
    return tail / middle if middle and tail else None


def _ratio_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def percentile_of(ordered: Sequence[float], percentile: float) -> float | None:
    if not ordered:
        return None
    rank = max(1, round(percentile / 100 * len(ordered) + 0.4999))
    return ordered[min(rank, len(ordered)) - 1]


def bucket_bound(series: str) -> float:
    """The upper bound of a histogram's bucket, from its series text (its `le` label)."""
    return float(series.split('le="', 1)[1].split('"', 1)[0])


def _histogram_from_metrics(url: str, name: str, selector: str) -> Figures:
    """p50/p99 upper bucket edges and the mean of a histogram, from one scrape."""
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    buckets: list[tuple[float, float]] = []
    total = count = 0.0
    for line in text.splitlines():
        if not line.startswith(name) or selector not in line:
            continue
        value = float(line.rsplit(" ", 1)[1])
        if line.startswith(name + "_bucket"):
            buckets.append((bucket_bound(line), value))
        elif line.startswith(name + "_sum"):
            total = value
        elif line.startswith(name + "_count"):
            count = value

    def quantile(q: float) -> float | None:
        for edge, cumulative in sorted(buckets):
            if count and cumulative >= q * count:
                return edge * 1000
        return None

    return {
        "p50 ms": f"≤ {quantile(0.5)}",
        "p99 ms": f"≤ {quantile(0.99)}",
        "mean ms": total / count * 1000 if count else None,
    }


# 7 --------------------------------------------------------------------------------------------


def workers(seconds: float, spread_connections: int) -> Section:
    section = Section(
        "workers",
        "Workers: throughput and CPU per message, and the spread of connections over workers",
        ["server", "msg/s", "server CPU µs/msg", "max/min connections per worker"],
    )
    for name, make in [*SINGLE, *PAIRED]:
        with running(make()) as server:
            rate, cost, spread_of = pingpong(server, 50, seconds)
        section.rows.append(
            {
                "server": name,
                "msg/s": rate,
                "server CPU µs/msg": cost,
                "max/min connections per worker": spread_of,
            }
        )
    worst = 0.0
    for count in (2, 4, 8):
        with running(start_wsmon(count)) as server, holding(server, spread_connections) as held:
            pass
        ratio = spread([w for r in held.ready for w in r["workers"]])
        worst = max(worst, ratio or float("inf"))
        section.rows.append(
            {
                "server": f"wsmon --workers {count}, {spread_connections} connections",
                "max/min connections per worker": ratio,
            }
        )
    section.target("max/min connections per worker", worst, 1.15)
    section.note = (
        "On 2 cores the client competes with the server: a second worker adds "
        "capacity only as far as a core is free."
    )
    return section


# 8 --------------------------------------------------------------------------------------------


def loadgen_cost(connections: int, interval: float, seconds: float) -> Section:
    """`wsmon loadtest` itself, as CI runs it, against wsmon: the CPU it reports for itself."""
    section = Section(
        "loadgen_cost",
        f"The load generator's own cost: wsmon loadtest custom --connections {connections} "
        f"--interval {interval:g} --duration {seconds:g}, against wsmon --workers 2",
        ["messages", "CPU s", "% of one core", "messages per CPU-second", "p99 ms"],
    )
    with running(start_wsmon(2)) as server, tempfile.TemporaryDirectory() as scratch:
        report_path = Path(scratch) / "report.json"
        wsmon = Path(sys.executable).with_name("wsmon")
        subprocess.run(
            [
                str(wsmon),
                "loadtest",
                "custom",
                "--connections",
                str(connections),
                "--interval",
                str(interval),
                "--duration",
                str(seconds),
                "--ramp-up",
                "2",
                "--url",
                server.url,
                "--quiet",
                "--no-report",
                "--json",
                str(report_path),
            ],
            check=False,
            stdout=subprocess.DEVNULL,
            timeout=seconds + 120,
        )
        report = orjson.loads(report_path.read_bytes())
    cpu = report["cpu"]
    section.rows.append(
        {
            "messages": report["messages"]["attempted"],
            "CPU s": cpu["cpu_s"],
            "% of one core": cpu["percent_of_core"],
            "messages per CPU-second": cpu["messages_per_cpu_second"],
            "p99 ms": report["latency"]["p99_ms"],
        }
    )
    section.target("load generator, % of one core", cpu["percent_of_core"], 50, unit=" %")
    return section


# 9 --------------------------------------------------------------------------------------------

# The client's classes of delivery (clients.rooms), in the order the report shows them.
PATHS = (
    ("same worker", "A to A, the sender's worker"),
    ("other worker", "A to A, the other worker (through A's supervisor)"),
    ("other instance", "A to B (A's supervisor, Redis, B's supervisor)"),
)


def supervisor_and_workers(server: Server) -> tuple[float, float]:
    """CPU seconds of wsmon's supervisor (the launched process) and of its workers, apart."""
    supervisor = supervisor_pids(server)
    return cpu_seconds(supervisor), cpu_seconds(
        [p for p in server.processes if p not in supervisor]
    )


def wait_for_broker(server: Server, timeout: float = 20) -> None:
    """Until the instance's /metrics says wsmon_broker_up 1 (both its Redis connections work)."""
    url = server.url.replace("ws://", "http://").replace("/ws", "/metrics")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with urllib.request.urlopen(url, timeout=10) as response:
            if "\nwsmon_broker_up 1" in response.read().decode():
                return
        time.sleep(0.1)
    raise RuntimeError(f"{server.url}: wsmon_broker_up not 1 within {timeout:.0f} s")


@dataclass
class BrokerRun:
    """One run of the rooms client: what it reported, the CPU seconds each part spent while the
    senders chatted (from the go signal to the client's result line), Redis's counters over the
    same time, and each part's CPU while idle."""

    figures: Figures
    cpu: dict[str, float]
    redis: dict[str, float]
    idle: dict[str, float]  # CPU seconds a second with the connections open and nothing sent


INSTANCES = ("A", "B", "C")
PARTS = (*(f"{name} {part}" for name in INSTANCES for part in ("supervisor", "workers")), "redis")


def parts_cpu(instances: Sequence[Server], redis: Server) -> dict[str, float]:
    """CPU seconds so far of each instance's supervisor and workers, and of redis-server."""
    spent: dict[str, float] = {}
    for name, server in zip(INSTANCES, instances, strict=True):
        spent[f"{name} supervisor"], spent[f"{name} workers"] = supervisor_and_workers(server)
    spent["redis"] = redis.cpu()
    return spent


def redis_counters(redis: Server) -> dict[str, float]:
    """Redis's own counts: bytes through its sockets (INFO stats) and PUBLISH calls and the
    microseconds spent inside them (INFO commandstats)."""
    stats, commands = redis_info(redis.url, "stats"), redis_info(redis.url, "commandstats")
    publish = dict(
        item.split("=", 1) for item in commands.get("cmdstat_publish", "calls=0,usec=0").split(",")
    )
    return {
        "bytes in": float(stats["total_net_input_bytes"]),
        "bytes out": float(stats["total_net_output_bytes"]),
        "publish calls": float(publish["calls"]),
        "publish usec": float(publish["usec"]),
    }


def chat_run(
    instances: Sequence[Server],
    redis: Server,
    rooms: int,
    members: int,
    rate: float,
    seconds: float,
    cross: bool,
    idle_seconds: float = 2.0,
) -> BrokerRun:
    """One rooms client against A and B: `idle_seconds` with every connection open and nothing
    sent (each process's idle CPU), then the chatting, its CPU counted from the go signal to the
    client's result line (sent once every delivery arrived, before the connections close).
    `instances` are A (the senders and members), B (members) and C (nobody)."""
    a, b = instances[0], instances[1]
    args = ["--other", b.url, "--members", str(members), "--rate", str(rate / rooms)]
    args += ["--duration", str(seconds), *(["--cross"] if cross else [])]
    proc = client("rooms", a, rooms, *args)
    try:
        assert proc.stdout is not None
        if not proc.stdout.readline():
            raise RuntimeError(f"benchmark client (rooms) exited with code {proc.wait()}")
        idle_before, idle_started = parts_cpu(instances, redis), time.perf_counter()
        time.sleep(idle_seconds)
        cpu_before, redis_before = parts_cpu(instances, redis), redis_counters(redis)
        idle_took = time.perf_counter() - idle_started
        proc.send_signal(signal.SIGUSR1)
        line = proc.stdout.readline()
        cpu_after, redis_after = parts_cpu(instances, redis), redis_counters(redis)
        if not line:
            raise RuntimeError(f"benchmark client (rooms) exited with code {proc.wait()}")
        proc.communicate(timeout=STOP_SECONDS)
    finally:
        stop([proc])
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark client (rooms) failed with exit code {proc.returncode}")
    return BrokerRun(
        orjson.loads(line),
        {key: cpu_after[key] - cpu_before[key] for key in cpu_before},
        {key: redis_after[key] - redis_before[key] for key in redis_before},
        {key: (cpu_before[key] - idle_before[key]) / idle_took for key in cpu_before},
    )


def broker_delivery(
    rounds: int,
    seconds: float,
    rooms: int = 20,
    members: int = 2,
    rate: float = 200,
    idle_seconds: float = 2.0,
) -> list[Section]:
    """Issue 13: delivery between instances through Redis against delivery within one instance,
    and what the broker costs each process per message.

    Two trios of `wsmon --workers 2` run side by side: A, B and C sharing a redis-server
    (`--broker`), and A2, B2 and C2 without one. The same client load takes turns on each trio
    (ABBA order over `rounds`), C with no client at all (what a subscription costs an instance
    with nobody to deliver to): `rooms` rooms, each with a sender on A and `members` members on
    each of A and B, `rate` chats a second in all. With the broker every chat gives same-instance
    and cross-instance samples at the same moment; CPU per chat on and off the broker, pair by
    pair, gives the broker's cost.
    """
    latency = Section(
        "broker_latency",
        f"Delivery between instances: {rate:g} chats/s into {rooms} rooms, each chat to "
        f"{members} members on A and {members} on B; {rounds} round(s) of {seconds:g} s, "
        "A and B wsmon --workers 2",
        ["path", "broker", "deliveries", "p50 ms", "p99 ms", "max ms"],
    )
    cost = Section(
        "broker_cpu",
        f"CPU per chat with and without the broker ({rate:g} chats/s, {rounds} alternating "
        "pairs of runs, medians; C: subscribed, no connections)",
        [
            "process",
            "broker on µs/chat",
            "broker off µs/chat",
            "on - off µs/chat",
            "on - off of each pair",
            "idle ms/s, on",
            "idle ms/s, off",
        ],
    )
    runs: dict[bool, list[BrokerRun]] = {True: [], False: []}
    channel = f"bench-{secrets.token_hex(4)}"
    with running(start_redis()) as redis:
        flags = ("--broker", redis.url, "--broker-channel", channel)
        trios: dict[bool, list[Server]] = {True: [], False: []}
        try:
            for cross in (True, False):
                for _ in INSTANCES:
                    trios[cross].append(start_wsmon(2, *flags) if cross else start_wsmon(2))
            for server in trios[True]:
                wait_for_broker(server)
            for number in range(rounds):
                for cross in (True, False) if number % 2 == 0 else (False, True):
                    runs[cross].append(
                        chat_run(
                            trios[cross], redis, rooms, members, rate, seconds, cross, idle_seconds
                        )
                    )
            delay = _histogram_from_metrics(
                trios[True][0].url.replace("ws://", "http://").replace("/ws", "/metrics"),
                "wsmon_broker_delay_seconds",
                "",
            )
        finally:
            for trio in trios.values():
                for server in trio:
                    server.stop()
    merged: dict[tuple[bool, str], Any] = {}
    for cross, mode_runs in runs.items():
        for run in mode_runs:
            for path, encoded in run.figures["histograms"].items():
                histogram = merged.setdefault(
                    (cross, path), HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)
                )
                histogram.add(HdrHistogram.decode(encoded))
    quantiles: dict[tuple[bool, str], tuple[float, float]] = {}
    for cross in (True, False):
        for path, shown in PATHS:
            histogram = merged.get((cross, path))
            if histogram is None or not histogram.get_total_count():
                continue
            p50 = histogram.get_value_at_percentile(50) / 1000
            p99 = histogram.get_value_at_percentile(99) / 1000
            quantiles[(cross, path)] = (p50, p99)
            latency.rows.append(
                {
                    "path": shown,
                    "broker": "on" if cross else "off",
                    "deliveries": histogram.get_total_count(),
                    "p50 ms": p50,
                    "p99 ms": p99,
                    "max ms": histogram.get_max_value() / 1000,
                }
            )
    same = HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)
    for path in ("same worker", "other worker"):
        if (True, path) in merged:
            same.add(merged[(True, path)])
    latency.rows.append(
        {
            "path": "A's own message back from Redis (wsmon_broker_delay_seconds, bucket edges)",
            "broker": "on",
            **delay,
        }
    )
    sent = {
        cross: sum(run.figures["sent"] for run in mode_runs) for cross, mode_runs in runs.items()
    }
    expected = sum(run.figures["expected"] for run in runs[True])
    received = sum(run.figures["received"] for run in runs[True])
    unexpected = sum(run.figures["unexpected"] for mode_runs in runs.values() for run in mode_runs)
    crossed = quantiles.get((True, "other instance"))
    if crossed is not None and same.get_total_count():
        cross_p50, cross_p99 = crossed
        same_p50 = same.get_value_at_percentile(50) / 1000
        same_p99 = same.get_value_at_percentile(99) / 1000
        relayed_p50, relayed_p99 = quantiles[(True, "other worker")]
        latency.note = (
            f"Same chats, same moments (broker on): cross-instance ÷ same-instance (both A rows) "
            f"p50 {cross_p50:.3g} ÷ {same_p50:.3g} ms = {cross_p50 / same_p50:.2f}x, p99 "
            f"{cross_p99:.3g} ÷ {same_p99:.3g} ms = {cross_p99 / same_p99:.2f}x; against A's "
            f"other worker (the relay both take) p50 {cross_p50 / relayed_p50:.2f}x, p99 "
            f"{cross_p99 / relayed_p99:.2f}x. Delivered {received:,} of {expected:,} expected; "
            f"{sent[True]:,} chats with the broker, {sent[False]:,} without."
        )
        latency.rows.append(
            {
                "path": "ratio: A to B ÷ A to A (both workers)",
                "broker": "on",
                "p50 ms": cross_p50 / same_p50,
                "p99 ms": cross_p99 / same_p99,
                "p50 ratio to the other worker": cross_p50 / relayed_p50,
                "p99 ratio to the other worker": cross_p99 / relayed_p99,
                "delivered": received,
                "expected": expected,
                "unexpected": unexpected,
            }
        )
    for part in PARTS:
        per_chat = {
            cross: [run.cpu[part] / run.figures["sent"] * 1e6 for run in mode_runs]
            for cross, mode_runs in runs.items()
        }
        differences = [on - off for on, off in zip(per_chat[True], per_chat[False], strict=True)]
        cost.rows.append(
            {
                "process": part,
                "broker on µs/chat": statistics.median(per_chat[True]),
                "broker off µs/chat": statistics.median(per_chat[False]),
                "on - off µs/chat": statistics.median(differences),
                "on - off of each pair": ", ".join(f"{d:.1f}" for d in differences),
                "idle ms/s, on": statistics.median(r.idle[part] * 1000 for r in runs[True]),
                "idle ms/s, off": statistics.median(r.idle[part] * 1000 for r in runs[False]),
            }
        )
    calls = sum(run.redis["publish calls"] for run in runs[True])
    if calls:
        chats = sent[True]
        cost.note = (
            f"Redis per chat (broker on): {calls / chats:.2f} PUBLISH, "
            f"{sum(r.redis['publish usec'] for r in runs[True]) / calls:.1f} µs inside PUBLISH "
            f"(INFO commandstats), {sum(r.redis['bytes in'] for r in runs[True]) / chats:.0f} "
            f"bytes in and {sum(r.redis['bytes out'] for r in runs[True]) / chats:.0f} bytes out "
            f"(INFO stats: the frame once from A, then once to each of the {len(INSTANCES)} "
            f"subscribed instances, A's own copy included). A chat reaches {2 * members} members "
            f"with the broker, {members} without (B2's members are in their rooms but nothing "
            "reaches them); C and C2 hold no connection. Each figure is CPU from /proc schedstat "
            "over the chatting only."
        )
    return [latency, cost]


# 10 -------------------------------------------------------------------------------------------


def tcp_extended(*keys: str) -> dict[str, int]:
    """Counters of the kernel's TcpExt table (/proc/net/netstat), for the whole network
    namespace; 0 for a counter this kernel does not keep."""
    lines = [line.split() for line in Path("/proc/net/netstat").read_text().splitlines()]
    for names, numbers in zip(lines[::2], lines[1::2], strict=False):
        if names[0] == "TcpExt:":
            table = dict(zip(names[1:], map(int, numbers[1:]), strict=True))
            return {key: table.get(key, 0) for key in keys}
    return dict.fromkeys(keys, 0)


def listen_drops() -> dict[str, int]:
    """The kernel's count of connections a full accept queue turned away (TcpExt ListenOverflows
    and ListenDrops): a SYN dropped there is retried by the client 1 s later, and that second
    lands in its handshake time."""
    return tcp_extended("ListenOverflows", "ListenDrops")


def metric_values(url: str, name: str) -> dict[str, float]:
    """Every series of `name` in one scrape of wsmon's /metrics, by its label text."""
    return metric_families(url, name)[name]


def metric_families(url: str, *names: str) -> dict[str, dict[str, float]]:
    """Every series of each of `names`, by its label text, all from the same scrape."""
    with urllib.request.urlopen(url, timeout=10) as response:
        text = response.read().decode()
    found: dict[str, dict[str, float]] = {name: {} for name in names}
    for line in text.splitlines():
        series, _, value = line.rpartition(" ")
        name = series.split("{", 1)[0]
        if name in found:
            found[name][series[len(name) :]] = float(value)
    return found


def storm_run(
    server: Server, connections: int, sources: Sequence[str], processes: int = 2
) -> Figures:
    """Every connection at once from `processes` clients (each ready first, then told to go
    together): time until the last is admitted, handshake and admission quantiles (client-side,
    connect call to the 101, and to wsmon's welcome), failures by kind, and for wsmon the most
    that waited in each worker's hand-off queue (wsmon_handoff_queued_max) and what the gate
    refused (wsmon_handshakes_refused_total)."""
    share = even_shares(connections, processes)
    per_process = [list(sources[i::processes]) for i in range(processes)] if sources else None
    procs = []
    try:
        for i, n in enumerate(share):
            args = ["--timeout", "60"]
            if per_process and per_process[i]:
                args += ["--sources", ",".join(per_process[i])]
            procs.append(client("storm", server, n, *args))
        for proc in procs:
            assert proc.stdout is not None
            if not proc.stdout.readline():
                raise RuntimeError(f"benchmark client (storm) exited with code {proc.wait()}")
        drops_before, cpu_before = listen_drops(), server.cpu()
        for proc in procs:
            proc.send_signal(signal.SIGUSR1)
        # Each client holds its connections until every one has reported: one that closed its
        # own as soon as it was done would leave the workers unevenly loaded for the others'
        # late connections, and the supervisor rightly hands those to the emptier worker.
        parts = [next_line(proc) for proc in procs]
    finally:
        stop(procs)
    drops_after = listen_drops()
    handshake = merged_histogram(part["handshake"] for part in parts)
    admission = merged_histogram(part["admission"] for part in parts)
    failures = summed_counts(part["failures"] for part in parts)
    admitted = sum(part["admitted"] for part in parts)
    lasts = [part["last_admitted"] for part in parts if part["last_admitted"]]
    workers = [w for part in parts for w in (part["workers"] or [])]
    figures: Figures = {
        "connections": connections,
        "sources": len(sources) or 1,
        "admitted": admitted,
        "refused": connections - admitted,
        "failures": ", ".join(f"{k} {v}" for k, v in sorted(failures.items())) or "none",
        "s to admit all": max(lasts) - min(p["began"] for p in parts) if lasts else None,
        "handshake p50 ms": handshake.get_value_at_percentile(50) / 1000,
        "handshake p99 ms": handshake.get_value_at_percentile(99) / 1000,
        "admitted p99 ms": admission.get_value_at_percentile(99) / 1000,
        "max ms": admission.get_max_value() / 1000,
        "server CPU s": server.cpu() - cpu_before,
        "accept-queue overflows": drops_after["ListenOverflows"] - drops_before["ListenOverflows"],
        "worker spread": spread(workers),
    }
    if server.name.startswith("wsmon"):
        metrics_url = server.url.replace("ws://", "http://").replace("/ws", "/metrics")
        most = metric_values(metrics_url, "wsmon_handoff_queued_max")
        figures["hand-off queue peak"] = ", ".join(f"{int(v)}" for _, v in sorted(most.items()))
        refused = metric_values(metrics_url, "wsmon_handshakes_refused_total")
        figures["gate refused"] = int(sum(refused.values()))
        figures["gate refused by reason"] = {
            labels: int(value) for labels, value in refused.items() if value
        }
        rejected = metric_values(metrics_url, "wsmon_connections_rejected_total")
        figures["no worker could take"] = int(rejected.get('{reason="no_worker"}', 0))
    return figures


def storm(connections: int, rounds: int, sources: int = 10, workers: int = 2) -> Section:
    """Issue 14, item 2: a reconnect storm, `connections` at once, against wsmon --workers
    `workers` and bare aiohttp with as many SO_REUSEPORT processes, each started fresh for each
    run. Three cases: (a) one source address and wsmon's handshake rate limit off (what the other
    sections do); (b) the default limit (200/s a source address, bursts of 2,000) kept, the
    clients spread over `sources` addresses of 127.0.0.0/8 (connections/sources each, within
    the burst); (c) the default limit and one address, as from behind one NAT: the limit refuses
    what passes its burst, by design; (d) 1.5 times `connections`, as (a), one run each: what
    gives first past capacity (over `sources` addresses: 7,500 connects at once from one
    address and one process ran out of local ports, EADDRNOTAVAIL, with either server). (a)
    and (b) alternate with bare aiohttp for `rounds` pairs
    each; the run with the median time to admit all is shown, with every run's figure."""
    section = Section(
        "storm",
        f"Reconnect storm: {connections} connections at once, 2 client processes; wsmon "
        f"--workers {workers} against bare aiohttp x{workers} (SO_REUSEPORT), each fresh for "
        f"each run; {rounds} alternating pairs, the median run shown",
        [
            "server",
            "case",
            "admitted",
            "refused",
            "failures",
            "s to admit all",
            "handshake p50 ms",
            "handshake p99 ms",
            "admitted p99 ms",
            "hand-off queue peak",
            "gate refused",
            "no worker could take",
            "accept-queue overflows",
            "s to admit all, each run",
            "refused, each run",
        ],
    )
    addresses = [f"127.0.0.{2 + i}" for i in range(sources)]
    limited = ("--handshake-rate-limit", "200")
    makers: dict[str, Callable[[], Server]] = {
        "bare": lambda: start_baseline("aiohttp", workers),
        "wsmon": lambda: start_wsmon(workers),
        "wsmon limited": lambda: start_wsmon(workers, *limited),
    }
    cases = [
        ("a: 1 address, limit off", ("bare", "wsmon"), []),
        (f"b: {sources} addresses, limit 200/s", ("bare", "wsmon limited"), addresses),
    ]
    runs: dict[tuple[str, str], list[Figures]] = {}
    for case, pair, spread_over in cases:
        for number in range(rounds):
            for kind in pair if number % 2 == 0 else pair[::-1]:
                with running(makers[kind]()) as server:
                    name = server.name if kind == "bare" else f"{server.name}"
                    figures = storm_run(server, connections, spread_over)
                runs.setdefault((case, name), []).append(figures)
    with running(makers["wsmon limited"]()) as server:
        runs[("c: 1 address, limit 200/s", server.name)] = [storm_run(server, connections, [])]
    over = connections * 3 // 2  # past the gate's MAX_WAITING at the full size: what gives first
    for kind in ("bare", "wsmon"):
        with running(makers[kind]()) as server:
            runs[(f"d: {over:,} at once, {sources} addresses, limit off", server.name)] = [
                storm_run(server, over, addresses)
            ]
    shown: dict[tuple[str, str], Figures] = {}
    for (case, name), measured in runs.items():
        ordered = sorted(measured, key=lambda run: run["s to admit all"] or float("inf"))
        shown[(case, name)] = ordered[len(ordered) // 2]
        section.rows.append(
            {
                "server": name,
                "case": case,
                **shown[(case, name)],
                "s to admit all, each run": ", ".join(
                    f"{run['s to admit all']:.3g}" if run["s to admit all"] else "-"
                    for run in measured
                ),
                "refused, each run": ", ".join(str(run["refused"]) for run in measured),
                "runs": measured,
            }
        )
    bare_name, wsmon_name = f"bare aiohttp x{workers}", f"wsmon --workers {workers}"
    notes = []
    for case, _, _ in cases:
        bare, wsmon = shown[(case, bare_name)], shown[(case, wsmon_name)]
        if bare["s to admit all"] and wsmon["s to admit all"]:
            notes.append(
                f"{case}: wsmon ÷ bare, time to admit all "
                f"{wsmon['s to admit all'] / bare['s to admit all']:.2f}x, handshake p99 "
                f"{wsmon['handshake p99 ms'] / max(bare['handshake p99 ms'], 0.001):.2f}x"
            )
        worst = max(run["refused"] for run in runs[(case, wsmon_name)])
        section.target(f"wsmon connections refused ({case}, worst of {rounds} runs)", worst, 0)
    section.note = (
        "; ".join(notes)
        + ". Times from the clients' perf_counter: connect call to the 101 (handshake) and to "
        "wsmon's welcome (admitted; bare aiohttp sends none, so its 101). Accept-queue "
        "overflows: TcpExt ListenOverflows over the run (a SYN dropped so is retried 1 s later). "
        "Hand-off queue peak: wsmon_handoff_queued_max per worker after the run. Case c's "
        "refusals are the rate limit at work (wsmon_handshakes_refused_total{reason="
        '"rate_limited"}), not a capacity limit; case d, one run each, is past capacity: '
        "what the gate refused there, by reason, is in the report's JSON (runs)."
    )
    return section


# 11 -------------------------------------------------------------------------------------------


def busy_seconds() -> float:
    """CPU seconds every core has spent not idle since boot (/proc/stat, 10 ms ticks: enough
    for runs of seconds): with the servers' schedstat, what the client and the rest took."""
    ticks = cpu_columns()
    idle = ticks[3] + ticks[4]  # idle and iowait
    return (sum(ticks) - idle) / os.sysconf("SC_CLK_TCK")


def loaded_run(server: Server, clients: int, connections: int, seconds: float) -> Figures:
    """Ping-pong from `clients` processes of `connections` each: messages a second, server CPU
    per message, cores busy, and connections per server process counted mid-run from their open
    descriptors once all are open (for bare servers, which name no worker)."""
    pids = [proc.pid for proc in server.launched] if not server.name.startswith("wsmon") else []
    idle_fds = [fd_count([pid]) for pid in pids]
    cpu_before, busy_before, started = server.cpu(), busy_seconds(), time.perf_counter()
    procs = [
        client("pingpong", server, connections, "--duration", str(seconds)) for _ in range(clients)
    ]
    try:
        held: list[int] = []
        deadline = time.perf_counter() + seconds + 5
        while pids and time.perf_counter() < deadline:  # until every connection is open
            now = [fd_count([pid]) - idle for pid, idle in zip(pids, idle_fds, strict=True)]
            if sum(now) > sum(held):
                held = now
            if sum(held) >= clients * connections:
                break
            time.sleep(0.05)
        parts = [result(proc, timeout=seconds + 120) for proc in procs]
    finally:
        stop(procs)
    took = time.perf_counter() - started
    spent, busy = server.cpu() - cpu_before, busy_seconds() - busy_before
    messages = sum(part["messages"] for part in parts)
    rate = sum(part["messages"] / part["seconds"] for part in parts)
    spread_of: float | None
    if pids:
        shares = held
        spread_of = max(held) / min(held) if min(held) > 0 else float("inf")
    else:
        workers = [w for part in parts for w in (part["workers"] or [])]
        shares = [workers.count(index) for index in range(max(workers) + 1)] if workers else []
        spread_of = spread(workers)
    return {
        "msg/s": rate,
        "server CPU µs/msg": spent / messages * 1e6,
        "cores busy": busy / took,
        "server cores": spent / took,
        "connections per process": ", ".join(map(str, shares)),
        "spread": spread_of,
    }


def worker_counts(usable: int) -> list[int]:
    """1, 2, 4 … up to `usable` CPUs, and `usable` itself when it is no power of two."""
    counts = [1]
    while counts[-1] * 2 <= usable:
        counts.append(counts[-1] * 2)
    if counts[-1] != usable:
        counts.append(usable)
    return counts


def scaling(seconds: float, rounds: int, connections: int = 50) -> Section:
    """Issue 14, item 5: wsmon --workers N for N = 1, 2, 4 … up to the usable CPUs, beside bare
    aiohttp with N SO_REUSEPORT processes, under closed-loop ping-pong from N client processes
    of `connections` each (the load grows with N, so it saturates what N processes can serve).
    Each N's pair takes turns for `rounds` rounds (ABBA); medians. Speed-up is msg/s at N ÷ msg/s
    at 1, for each server; the goal is ≥ 0.9 N. The clients run on the same CPUs: where the
    machine has fewer than 2N, servers and clients compete and CPU per message is the truer
    figure."""
    usable = len(os.sched_getaffinity(0))
    counts = worker_counts(usable)
    section = Section(
        "scaling",
        f"Worker scaling on {usable} usable CPUs: ping-pong from N client processes x "
        f"{connections} connections, {seconds:g} s a run, {rounds} alternating rounds, medians",
        [
            "server",
            "N",
            "msg/s",
            "speed-up",
            "server CPU µs/msg",
            "server cores",
            "cores busy",
            "connections per process",
            "spread",
        ],
    )
    medians: dict[tuple[str, int], Figures] = {}
    for n in counts:
        pair = [
            (f"bare aiohttp x{n}", start_baseline("aiohttp", n)),
            (f"wsmon --workers {n}", start_wsmon(n)),
        ]
        runs: dict[str, list[Figures]] = {name: [] for name, _ in pair}
        try:
            for number in range(rounds):
                for name, server in pair if number % 2 == 0 else pair[::-1]:
                    runs[name].append(loaded_run(server, n, connections, seconds))
        finally:
            for _, server in pair:
                server.stop()
        for name, figures in runs.items():
            kind = "wsmon" if name.startswith("wsmon") else "bare"
            middle = sorted(figures, key=lambda run: run["msg/s"])[len(figures) // 2]
            medians[(kind, n)] = {
                **middle,
                "msg/s": statistics.median(run["msg/s"] for run in figures),
                "server CPU µs/msg": statistics.median(run["server CPU µs/msg"] for run in figures),
                "server cores": statistics.median(run["server cores"] for run in figures),
                "cores busy": statistics.median(run["cores busy"] for run in figures),
                "spread": max(run["spread"] or 1.0 for run in figures) if n > 1 else None,
                "runs": figures,
            }
    for kind, label in (("bare", "bare aiohttp x{n}"), ("wsmon", "wsmon --workers {n}")):
        for n in counts:
            row = medians[(kind, n)]
            row["speed-up"] = row["msg/s"] / medians[(kind, 1)]["msg/s"]
            section.rows.append({"server": label.format(n=n), "N": n, **row})
    top = counts[-1]
    wsmon_top, bare_top = medians[("wsmon", top)], medians[("bare", top)]
    section.target(f"wsmon speed-up at N={top}", wsmon_top["speed-up"], 0.9 * top, below=False)
    if top > 1:
        section.target(f"wsmon spread at N={top} (worst run)", wsmon_top["spread"], 1.15)
    section.note = (
        f"At N={top}: wsmon speed-up {wsmon_top['speed-up']:.2f}, bare aiohttp "
        f"{bare_top['speed-up']:.2f}; wsmon CPU per message {wsmon_top['server CPU µs/msg']:.1f} "
        f"µs against {medians[('wsmon', 1)]['server CPU µs/msg']:.1f} at N=1 (bare: "
        f"{bare_top['server CPU µs/msg']:.1f} against "
        f"{medians[('bare', 1)]['server CPU µs/msg']:.1f}); cores busy "
        f"{wsmon_top['cores busy']:.2f} of {usable} (server "
        f"{wsmon_top['server cores']:.2f}, the rest the clients). Cores busy is /proc/stat over "
        "the run; server CPU is the scheduler's nanosecond counters of every server process. "
        "wsmon's connections per worker are from the welcomes, bare aiohttp's from each "
        "process's open descriptors mid-run; spread is max/min, the worst of the runs."
    )
    return section
