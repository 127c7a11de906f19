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
"""

from __future__ import annotations

import statistics
from collections.abc import Callable

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


def two_ports() -> Server:
    """Bare aiohttp as two processes on ports of their own; the client's URL names both."""
    first, second = start_baseline("aiohttp"), start_baseline("aiohttp")
    return Server(
        "bare aiohttp x2, two ports",
        f"{first.url},{second.url}",
        first.launched + second.launched,
    )


def measured(server: Server, seconds: float) -> Figures:
    """One ping-pong run: messages a second, server CPU and voluntary context switches per
    message, the server's processes taken together (started and settled: procs.settle)."""
    pids = server.processes
    # wsmon's supervisor, apart: an echo never passes through it, so its share should be nil.
    supervisor = supervisor_pids(server)
    cpu, switches = server.cpu(), context_switches(pids)
    supervisor_cpu = cpu_seconds(supervisor)
    figures = result(client("pingpong", server, CONNECTIONS, "--duration", str(seconds)))
    messages = figures["messages"]
    return {
        "msg/s": messages / figures["seconds"],
        "server CPU µs/msg": (server.cpu() - cpu) / messages * 1e6,
        "of which the supervisor": (cpu_seconds(supervisor) - supervisor_cpu) / messages * 1e6,
        "sleeps per 1,000 msg": (context_switches(pids) - switches) / messages * 1000,
    }


def gap(seconds: float, rounds: int) -> Section:
    makers: list[tuple[str, Callable[[], Server]]] = [
        ("bare aiohttp x2 (SO_REUSEPORT)", lambda: start_baseline("aiohttp", 2)),
        ("bare aiohttp x2, two ports", two_ports),
        ("wsmon --workers 2", lambda: start_wsmon(2)),
    ]
    section = Section(
        "gap",
        f"The two-worker gap: one ping-pong client of {CONNECTIONS} connections, {seconds:g} s a "
        f"run, {rounds} rounds in turn (the order reversed every other round), medians",
        [
            "server",
            "msg/s",
            "server CPU µs/msg",
            "of which the supervisor",
            "sleeps per 1,000 msg",
            "CPU µs/msg of each run",
            "sleeps per 1,000 msg of each run",
        ],
    )
    runs: dict[str, list[Figures]] = {name: [] for name, _ in makers}
    for number in range(rounds):
        for name, make in makers if number % 2 == 0 else makers[::-1]:
            with running(make()) as server:
                runs[name].append(measured(server, seconds))
    medians: dict[str, Figures] = {}
    for name, figures in runs.items():
        medians[name] = {
            key: statistics.median(run[key] for run in figures)
            for key in (
                "msg/s",
                "server CPU µs/msg",
                "of which the supervisor",
                "sleeps per 1,000 msg",
            )
        }
        section.rows.append(
            {
                "server": name,
                **medians[name],
                "CPU µs/msg of each run": ", ".join(
                    f"{run['server CPU µs/msg']:.1f}" for run in figures
                ),
                "sleeps per 1,000 msg of each run": ", ".join(
                    f"{run['sleeps per 1,000 msg']:.0f}" for run in figures
                ),
                "runs": figures,
            }
        )
    wsmon = medians["wsmon --workers 2"]["server CPU µs/msg"]
    reuseport = medians["bare aiohttp x2 (SO_REUSEPORT)"]["server CPU µs/msg"]
    balanced = medians["bare aiohttp x2, two ports"]["server CPU µs/msg"]
    bare_runs = [
        run["server CPU µs/msg"]
        for name, figures in runs.items()
        if name.startswith("bare")
        for run in figures
    ]
    section.target(
        "wsmon ÷ bare aiohttp x2 (SO_REUSEPORT), CPU per message", wsmon / reuseport, 1.10
    )
    section.note = (
        f"wsmon ÷ bare aiohttp x2: {wsmon / reuseport:.2f} against SO_REUSEPORT, "
        f"{wsmon / balanced:.2f} against two ports shared evenly. Bare aiohttp's own runs, both "
        f"kinds, spread from {min(bare_runs):.1f} to {max(bare_runs):.1f} µs a message. "
        "Sleeps are voluntary context switches of every thread of the server's processes "
        "(/proc/PID/task/*/status): with one client on two cores each server process keeps "
        "waiting for work, as often as the scheduler's placement of three processes on two "
        "cores makes it, run by run."
    )
    return section
