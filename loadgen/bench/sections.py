"""The benchmark's measurements, one function per section of the report.

Each returns a `Section`: rows of measured figures, and the target with its verdict where the issue
sets one. Baselines run in the same invocation, interleaved round by round with wsmon where a ratio
is reported, so that drift of the machine cancels out.
"""

from __future__ import annotations

import contextlib
import secrets
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from hdrh.histogram import HdrHistogram  # type: ignore[import-untyped]
from websockets.sync.client import connect

from ..stats import HIGHEST_US, LOWEST_US, SIGNIFICANT_DIGITS
from .procs import (
    Server,
    cpu_seconds,
    redis_info,
    running,
    start_baseline,
    start_redis,
    start_wsmon,
    tree,
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
        f"{seconds:g} s a run, {rounds} interleaved rounds",
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
        for _ in range(rounds):
            for name, server in servers:
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
    share = [connections // processes + (i < connections % processes) for i in range(processes)]
    procs = [
        client(
            "open", server, n, "--rate", str(rate), "--duration", str(seconds), "--seed", str(i + 1)
        )
        for i, n in enumerate(share)
    ]
    parts = [result(proc, timeout=seconds + 120) for proc in procs]
    merged = HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)
    for part in parts:
        merged.add(HdrHistogram.decode(part["histogram"]))
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
    share = [connections // processes + (i < connections % processes) for i in range(processes)]
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


def send_floor(sockets: int, frame_bytes: int = 100) -> float:
    """What the kernel alone charges: one process writing one frame to each of `sockets` loopback
    TCP sockets with plain socket.send (median of 5 rounds, ms). On loopback the sender also pays
    for the receiving side of TCP, so this is the floor under any server's fan-out."""
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
            rounds = []
            for _ in range(5):
                started = time.perf_counter()
                for _, server_side in pairs:
                    server_side.send(frame)
                rounds.append((time.perf_counter() - started) * 1000)
                for client_side, _ in pairs:
                    client_side.recv(4096)
        finally:
            for client_side, server_side in pairs:
                client_side.close()
                server_side.close()
    return statistics.median(rounds)


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
        times, size = [], 0
        for _ in range(50):
            elapsed, size = scrape(metrics_url)
            times.append(elapsed)
        listeners = [proc.pid for proc in procs]
        server_cpu, client_cpu = server.cpu(), cpu_seconds(listeners)
        with connect(server.url, compression=None) as sender:
            sender.recv()  # welcome
            for number in range(broadcasts):
                payload = {"t": time.perf_counter(), "n": number}
                sender.send(
                    orjson.dumps({"type": "broadcast", "id": number, "payload": payload}).decode()
                )
                sender.recv()  # ack
                time.sleep(0.3)
        time.sleep(1.0)
        # CPU each broadcast cost, sender and recipients: on 2 cores the fan-out cannot finish
        # sooner than half their sum, whatever the server does.
        server_cpu = (server.cpu() - server_cpu) / broadcasts * 1000
        client_cpu = (cpu_seconds(listeners) - client_cpu) / broadcasts * 1000
        server_side = _histogram_from_metrics(
            metrics_url, "wsmon_broadcast_duration_seconds", 'type="broadcast"'
        )
    finished = held.finished  # the listeners' arrivals, reported once they were released
    arrivals: dict[str, list[float]] = {}
    for part in finished:
        for number, values in part["arrivals"].items():
            arrivals.setdefault(number, []).extend(values)
    complete = sorted(max(values) * 1000 for values in arrivals.values())
    delivered = sum(len(values) for values in arrivals.values())
    fanout.rows.append(
        {
            "measured at": f"clients (last of {connected} recipients)",
            "broadcasts": len(complete),
            "p50 ms": _pct(complete, 50),
            "p99 ms": _pct(complete, 99),
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
    fanout.rows.append(
        {
            "measured at": f"floor: plain socket.send of one frame to {connections // 2} "
            "loopback sockets (one worker's share), no server",
            "broadcasts": 5,
            "p50 ms": floor,
        }
    )
    fanout.note = (
        f"CPU per broadcast: wsmon {server_cpu:.1f} ms (both workers and the supervisor), "
        f"listening clients {client_cpu:.1f} ms; on 2 cores no fan-out can finish in less than "
        f"half their sum, {(server_cpu + client_cpu) / 2:.1f} ms."
    )
    fanout.target("p99 fan-out as clients observe it", _pct(complete, 99), 50, unit=" ms")
    times.sort()
    metrics.rows.append(
        {
            "scrapes": len(times),
            "p50 ms": _pct(times, 50),
            "p99 ms": _pct(times, 99),
            "max ms": times[-1],
            "bytes": size,
        }
    )
    metrics.target("p99 /metrics scrape", _pct(times, 99), 10, unit=" ms")
    return [fanout, metrics]


def _pct(ordered: Sequence[float], percentile: float) -> float | None:
    if not ordered:
        return None
    rank = max(1, round(percentile / 100 * len(ordered) + 0.4999))
    return ordered[min(rank, len(ordered)) - 1]


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
            edge = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float(edge), value))
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
    supervisor = server.launched[0].pid
    return cpu_seconds([supervisor]), cpu_seconds([p for p in tree(supervisor) if p != supervisor])


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
