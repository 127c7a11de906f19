"""`python -P -m wsmon.loadgen.bench` (what `make bench` runs): every comparison, one report.

Writes reports/bench-<date>.json (every run's figures) and reports/bench-<date>.md (the tables that
docs/performance.md quotes), and prints the tables.
"""

from __future__ import annotations

import datetime
import os
import platform
import time
from collections.abc import Callable
from pathlib import Path

import click
import orjson

from . import crowd, gap, sections
from .procs import cpu_ticks, stolen
from .sections import Section


def machine() -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    memory_kib = int(Path("/proc/meminfo").read_text().split()[1])
    return (
        f"{os.cpu_count()} cores ({model}), {memory_kib / 1024 / 1024:.0f} GiB, "
        f"Linux {platform.release()}, Python {platform.python_version()}"
    )


def markdown(section: Section) -> str:
    lines = [
        f"### {section.title}",
        "",
        "| " + " | ".join(section.columns) + " |",
        "|" + "---|" * len(section.columns),
    ]
    for row in section.rows:
        lines.append("| " + " | ".join(_cell(row.get(column)) for column in section.columns) + " |")
    if section.note:
        lines += ["", section.note]
    if section.stolen_percent is not None:
        lines += [
            "",
            f"Stolen by the hypervisor while this section ran: {section.stolen_percent:.1f} % of "
            "the machine's CPU time (/proc/stat).",
        ]
    for target in section.targets:
        verdict = "met" if target["met"] else "MISSED"
        lines.append(
            f"- target {target['target']}: measured {_cell(target['measured'])} — **{verdict}**"
        )
    return "\n".join(lines) + "\n"


def _cell(value: object) -> str:
    """Display only: figures are stored and judged unrounded (reports/bench-*.json has them)."""
    if value is None:
        return "-"
    if isinstance(value, float):
        if 99 < value < 100:  # a success rate just short of 100 % must not print as 100
            return f"{value:.4f}"
        return f"{value:.3g}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--quick",
    is_flag=True,
    help="Small sizes and short runs: checks the benchmark works, measures little.",
)
@click.option(
    "--only",
    multiple=True,
    type=click.Choice(
        [
            "echo",
            "latency",
            "memory",
            "many",
            "broadcast",
            "workers",
            "loadgen",
            "broker",
            "storm",
            "scaling",
            "crowd",
            "gap",
        ]
    ),
    help="Run only these sections (repeatable).",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("reports"),
    show_default=True,
    help="Directory for bench-<date>.json and .md.",
)
def main(quick: bool, only: tuple[str, ...], out: Path) -> None:
    """Measure wsmon against bare aiohttp and websockets echo servers, side by side."""
    big = 1000 if quick else 10_000
    plan: list[tuple[str, Callable[[], list[Section]]]] = [
        ("echo", lambda: [sections.echo_cost(rounds=1 if quick else 6, seconds=1 if quick else 4)]),
        (
            "latency",
            lambda: [
                sections.open_latency(
                    [1000, 4000] if quick else [2000, 5000, 10_000, 15_000, 20_000],
                    connections=200 if quick else 1000,
                    seconds=2 if quick else 5,
                )
            ],
        ),
        ("memory", lambda: [sections.idle_memory(big)]),
        (
            "many",
            lambda: [
                sections.many_connections(
                    [500, big] if quick else [2000, 5000, 10_000],
                    seconds=3 if quick else 10,
                    rounds=1 if quick else 5,
                )
            ],
        ),
        ("broadcast", lambda: sections.broadcast_and_scrape(big, broadcasts=5 if quick else 100)),
        (
            "workers",
            lambda: [
                sections.workers(seconds=1 if quick else 4, spread_connections=80 if quick else 400)
            ],
        ),
        (
            "loadgen",
            lambda: [
                sections.loadgen_cost(
                    connections=100 if quick else 500, interval=1.0, seconds=3 if quick else 30
                )
            ],
        ),
        (
            "broker",
            lambda: sections.broker_delivery(
                rounds=1 if quick else 3, seconds=2 if quick else 6, rate=100 if quick else 200
            ),
        ),
        ("storm", lambda: [sections.storm(big, rounds=1 if quick else 3)]),
        (
            "scaling",
            lambda: [sections.scaling(seconds=1 if quick else 4, rounds=1 if quick else 3)],
        ),
        ("gap", lambda: [gap.gap(seconds=1 if quick else 4, rounds=1 if quick else 6)]),
        (
            "crowd",
            lambda: [crowd.crowd(5000 if quick else 100_000, seconds=3 if quick else 30)],
        ),
    ]
    started = time.monotonic()
    results: list[Section] = []
    for key, run in plan:
        if only and key not in only:
            continue
        click.echo(f"[{time.monotonic() - started:5.0f}s] {key} …", err=True)
        before = cpu_ticks()
        produced = run()
        steal = stolen(before, cpu_ticks())
        for section in produced:
            section.stolen_percent = steal
            results.append(section)
            click.echo(markdown(section))
    stamp = datetime.datetime.now().strftime("%Y-%m-%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    header = (
        f"## wsmon benchmark, {stamp}\n\nMachine: {machine()}. "
        f"Took {time.monotonic() - started:.0f} s (`make bench`).\n\n"
    )
    (out / f"bench-{stamp}.md").write_text(header + "\n".join(markdown(s) for s in results))
    document = {
        "date": stamp,
        "machine": machine(),
        "quick": quick,
        "sections": [s.__dict__ for s in results],
    }
    (out / f"bench-{stamp}.json").write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
    click.echo(f"wrote {out / f'bench-{stamp}.md'} and .json", err=True)


if __name__ == "__main__":
    main()
