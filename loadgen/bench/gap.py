"""Issue 14, item 3: the two-worker gap, wsmon --workers 2 against bare aiohttp with two processes.

One ping-pong client process of 50 connections against two server processes on two cores: the
client can use one core, so the two servers share about one between them and each keeps going
to sleep for want of work, as often as the scheduler's placement of three busy processes on two
cores makes it, run by run, for any server. Each run records the server's voluntary context
switches per message beside its CPU per message, so that a run that slept more can be told
apart. (A straight line through bare aiohttp's runs, CPU against sleeps, was tried as a way to
compare at equal sleeps: its slope changed sign from one invocation to the next, so sleeps alone
do not explain the spread, and the comparison is of medians.)

Bare aiohttp runs twice: with SO_REUSEPORT (the kernel's hash spreads the 50 connections
unevenly) and as two processes on two ports with the client's connections shared 25 / 25, as
wsmon's supervisor shares them, so that balance is not what differs.

How often a server sleeps moves its CPU per message by as much as the gap itself: the same wsmon
pool costs 10-16 % less a message, sleeping half as often, when its client keeps two echoes in
flight instead of one (docs/performance.md, fifth round, has the script). So each server also
runs at a fixed rate, below what any of them answers: all are offered the same messages at the
same moments, whatever their speed, and a faster server is not sent more.

What wsmon does for an echo beyond a bare echo server (parse and check the JSON, count, time, its
rate check) costs about 1.1 µs in-process, some 8 % of a message here (docs/performance.md, sixth
round, times it piece by piece): most of the gap this section measures is that work.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass

from .procs import (
    Server,
    context_switches,
    cpu_seconds,
    running,
    start_baseline,
    start_wsmon,
    supervisor_pids,
)
from .sections import Figures, Section, client, result

CONNECTIONS = 50
WSMON, REUSEPORT, TWO_PORTS = (
    "wsmon --workers 2",
    "bare aiohttp x2 (SO_REUSEPORT)",
    "bare aiohttp x2, two ports",
)
# Echoes a second on each connection in the fixed-rate runs: 15,000 a second in all, well below
# what any of the servers answers ping-pong (50,000-90,000), so that all are offered the same work.
FIXED_RATE = 300


def two_ports() -> Server:
    """Bare aiohttp as two processes on ports of their own; the client's URL names both."""
    first, second = start_baseline("aiohttp"), start_baseline("aiohttp")
    return Server(
        TWO_PORTS,
        f"{first.url},{second.url}",
        first.launched + second.launched,
    )


@dataclass(frozen=True)
class Spent:
    """What the server's processes spent while one client ran: CPU seconds (and its
    supervisor's share) and voluntary context switches."""

    cpu: float
    supervisor_cpu: float
    sleeps: int


def run_client(server: Server, mode: str, *args: str) -> tuple[Figures, Spent]:
    """One client of CONNECTIONS against the server (started and settled: procs.settle): its
    result line, and what the server's processes, taken together, spent meanwhile."""
    pids = server.processes
    # wsmon's supervisor, apart: an echo never passes through it, so its share should be nil.
    supervisor = supervisor_pids(server)
    cpu, switches = server.cpu(), context_switches(pids)
    supervisor_cpu = cpu_seconds(supervisor)
    figures = result(client(mode, server, CONNECTIONS, *args))
    return figures, Spent(
        server.cpu() - cpu,
        cpu_seconds(supervisor) - supervisor_cpu,
        context_switches(pids) - switches,
    )


def measured(server: Server, seconds: float) -> Figures:
    """One ping-pong run: messages a second, server CPU and voluntary context switches per
    message."""
    figures, spent = run_client(server, "pingpong", "--duration", str(seconds))
    messages = figures["messages"]
    return {
        "msg/s": messages / figures["seconds"],
        "server CPU µs/msg": spent.cpu / messages * 1e6,
        "of which the supervisor": spent.supervisor_cpu / messages * 1e6,
        "sleeps per 1,000 msg": spent.sleeps / messages * 1000,
    }


def at_fixed_rate(server: Server, seconds: float) -> Figures:
    """One run at FIXED_RATE echoes a second on each connection: server CPU and voluntary
    context switches per echo answered. The 50 handshakes are counted in: about 12 ms of wsmon's
    CPU (some 240 µs each, the crowd section's figure) against 1.5 s for a 4 s run's echoes."""
    figures, spent = run_client(
        server, "open", "--rate", str(FIXED_RATE), "--duration", str(seconds), "--seed", "1"
    )
    answered = figures["answered"]
    return {
        "fixed-rate CPU µs/msg": spent.cpu / answered * 1e6,
        "fixed-rate sleeps per 1,000 msg": spent.sleeps / answered * 1000,
    }


# Columns that list every run's figure: the column, the run's figure, its decimal places.
EACH_RUN = (
    ("CPU µs/msg of each run", "server CPU µs/msg", 1),
    ("sleeps per 1,000 msg of each run", "sleeps per 1,000 msg", 0),
    ("fixed-rate CPU µs/msg of each run", "fixed-rate CPU µs/msg", 1),
)


def gap(seconds: float, rounds: int) -> Section:
    makers: list[tuple[str, Callable[[], Server]]] = [
        (REUSEPORT, lambda: start_baseline("aiohttp", 2)),
        (TWO_PORTS, two_ports),
        (WSMON, lambda: start_wsmon(2)),
    ]
    section = Section(
        "gap",
        f"The two-worker gap: one ping-pong client of {CONNECTIONS} connections, {seconds:g} s a "
        f"run, {rounds} rounds in turn (the order reversed every other round), medians; then, "
        f"on the same server, {FIXED_RATE} echoes a second on each connection",
        [
            "server",
            "msg/s",
            "server CPU µs/msg",
            "of which the supervisor",
            "sleeps per 1,000 msg",
            "CPU µs/msg of each run",
            "sleeps per 1,000 msg of each run",
            "fixed-rate CPU µs/msg",
            "fixed-rate sleeps per 1,000 msg",
            "fixed-rate CPU µs/msg of each run",
        ],
    )
    runs: dict[str, list[Figures]] = {name: [] for name, _ in makers}
    for number in range(rounds):
        for name, make in makers if number % 2 == 0 else makers[::-1]:
            with running(make()) as server:
                runs[name].append(measured(server, seconds) | at_fixed_rate(server, seconds))
    medians: dict[str, Figures] = {}
    for name, figures in runs.items():
        medians[name] = {key: statistics.median(run[key] for run in figures) for key in figures[0]}
        section.rows.append(
            {
                "server": name,
                **medians[name],
                **{
                    column: ", ".join(f"{run[key]:.{places}f}" for run in figures)
                    for column, key, places in EACH_RUN
                },
                "runs": figures,
            }
        )
    wsmon = medians[WSMON]["server CPU µs/msg"]
    reuseport = medians[REUSEPORT]["server CPU µs/msg"]
    balanced = medians[TWO_PORTS]["server CPU µs/msg"]
    at_rate = {name: figures["fixed-rate CPU µs/msg"] for name, figures in medians.items()}
    fixed = at_rate[WSMON] / at_rate[REUSEPORT]
    bare_runs = [
        run["server CPU µs/msg"]
        for name, figures in runs.items()
        if name.startswith("bare")
        for run in figures
    ]
    # Round by round: each pair ran within one round, seconds apart, so its ratio has less of the
    # machine's drift in it than the medians' (which may come from different rounds).
    paired = sorted(
        w["server CPU µs/msg"] / b["server CPU µs/msg"]
        for w, b in zip(runs[WSMON], runs[REUSEPORT], strict=True)
    )
    section.target(f"wsmon ÷ {REUSEPORT}, CPU per message", wsmon / reuseport, 1.10)
    section.target(
        f"wsmon ÷ {REUSEPORT} at {FIXED_RATE * CONNECTIONS:,} echoes a second, CPU per message",
        fixed,
        1.10,
    )
    section.note = (
        f"wsmon ÷ bare aiohttp x2: {wsmon / reuseport:.2f} against SO_REUSEPORT, "
        f"{wsmon / balanced:.2f} against two ports shared evenly. Round by round against "
        f"SO_REUSEPORT: median {statistics.median(paired):.2f}, from {paired[0]:.2f} to "
        f"{paired[-1]:.2f}. Bare aiohttp's own runs, both "
        f"kinds, spread from {min(bare_runs):.1f} to {max(bare_runs):.1f} µs a message. "
        "Sleeps are voluntary context switches of every thread of the server's processes "
        "(/proc/PID/task/*/status): with one client on two cores each server process keeps "
        "waiting for work, as often as the scheduler's placement of three processes on two "
        "cores makes it, run by run. At a fixed "
        f"{FIXED_RATE * CONNECTIONS:,} echoes a second, below what any answers, all are "
        "offered the same work whatever their speed: wsmon ÷ bare aiohttp x2 "
        f"{fixed:.2f} against SO_REUSEPORT, {at_rate[WSMON] / at_rate[TWO_PORTS]:.2f} against "
        "two ports shared evenly."
    )
    return section
