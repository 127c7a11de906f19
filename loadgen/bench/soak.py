"""`python -P -m wsmon.loadgen.bench.soak` (what `make soak` runs): wsmon under the extreme profile,
churn and bad input for ten minutes; does memory, descriptors and the counters hold?

Starts `wsmon serve --workers 2` on a free port, runs the load from a separate client process
(soak_clients.py), samples the server's process tree every --sample-seconds (RSS and open
descriptors from /proc, wsmon_connections_active from /metrics), and once the clients have gone
judges (soak_checks.py): RSS growth after warm-up, descriptors and active connections back to
idle, and every counter of /metrics against what the clients did. Prints the verdict and writes
reports/soak-<date>.md and .json; exits 0 when every check passed, 1 otherwise.
"""

from __future__ import annotations

import datetime
import os
import shlex
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click
import orjson

from ..profiles import PROFILES
from .__main__ import machine
from .procs import Server, fd_count, rss_bytes, running, start_wsmon
from .soak_checks import (
    GROWTH_LIMIT_PERCENT,
    MEDIAN_OF,
    Check,
    Sample,
    Scrape,
    table,
    verdict,
)
from .soak_clients import BAD_KINDS, DEFAULT_MIX, MAX_MESSAGE_BYTES

EXTREME = PROFILES["extreme"]
# The server's own limits stay at their defaults (the soak's traffic is well inside them, and a
# soak should run the server as deployed): said explicitly, because procs.start_wsmon lifts both
# for the benchmark, and the last of a repeated flag wins.
SERVER_FLAGS = ("--rate-limit", "1000", "--handshake-rate-limit", "200")
SETTLE_SECONDS = 20.0  # after the clients exit: how long descriptors get to return to idle
CLIENT_EXIT_SECONDS = 120.0  # past the load's end: closing 1,000 connections, grace included


def metrics_url(server: Server) -> str:
    return server.url.replace("ws://", "http://").replace("/ws", "/metrics")


def take_sample(server: Server, t: float, phase: str) -> tuple[Sample, Scrape]:
    """Descriptors first, then /metrics: the scrape's own connection is not counted."""
    pids = server.processes
    supervisor = server.launched[0].pid
    names = {pid: ("supervisor" if pid == supervisor else f"pid {pid}") for pid in pids}
    fds = {names[pid]: fd_count([pid]) for pid in pids}
    rss = {names[pid]: rss_bytes([pid]) for pid in pids}
    with urllib.request.urlopen(metrics_url(server), timeout=10) as response:
        scrape = Scrape.parse(response.read().decode())
    sample = Sample(
        t=t,
        phase=phase,
        rss=sum(rss.values()),
        fds=sum(fds.values()),
        active=scrape.total("wsmon_connections_active"),
        rss_by_process=rss,
        fds_by_process=fds,
    )
    return sample, scrape


def progress(sample: Sample, idle: Sample) -> None:
    change = (sample.rss - idle.rss) / idle.rss * 100
    click.echo(
        f"[{sample.t:7.1f}s] {sample.phase:7} rss {sample.rss / 2**20:8.1f} MiB"
        f" ({change:+.2f} % on idle)  fds {sample.fds:6d}  active {sample.active:g}",
        err=True,
    )


def client_command(
    server: Server,
    connections: int,
    seconds: float,
    churn: float,
    bad: float,
    mix: str,
) -> list[str]:
    return [
        sys.executable,
        "-P",
        "-m",
        "wsmon.loadgen.bench.soak_clients",
        server.url,
        "--connections",
        str(connections),
        "--interval",
        str(EXTREME.interval),
        "--seconds",
        str(seconds),
        "--churn-per-second",
        str(churn),
        "--bad-per-second",
        str(bad),
        "--mix",
        mix,
        "--max-message-bytes",
        str(MAX_MESSAGE_BYTES),
    ]


def settle(server: Server, idle: Sample, t: float, slack: int) -> tuple[Sample, Scrape, float]:
    """Sample once a second until no connection is active and descriptors are back within
    `slack` of idle, or SETTLE_SECONDS pass; the last sample is the one judged."""
    started = time.monotonic()
    while True:
        time.sleep(1.0)
        waited = time.monotonic() - started
        sample, scrape = take_sample(server, t + waited, "after")
        if sample.active == 0 and sample.fds - idle.fds <= slack:
            return sample, scrape, waited
        if waited >= SETTLE_SECONDS:
            return sample, scrape, waited


def run(
    minutes: float,
    connections: int,
    churn: float,
    bad: float,
    warmup_fraction: float,
    sample_seconds: float,
    workers: int,
    fd_slack: int,
    mix: str,
) -> dict[str, Any]:
    seconds = minutes * 60
    document: dict[str, Any] = {"load_average_start": os.getloadavg()}
    with running(start_wsmon(workers, *SERVER_FLAGS)) as server:
        document["server"] = server.name + " " + " ".join(SERVER_FLAGS)
        take_sample(server, -1.0, "idle")  # the first scrape sets up what every later one uses
        time.sleep(1.0)
        idle, _ = take_sample(server, 0.0, "idle")
        click.echo(
            f"idle: rss {idle.rss / 2**20:.1f} MiB, fds {idle.fds} ({idle.fds_by_process})",
            err=True,
        )
        command = client_command(server, connections, seconds, churn, bad, mix)
        client = subprocess.Popen(command, stdout=subprocess.PIPE)
        assert client.stdout is not None
        ready_line = client.stdout.readline()
        if not ready_line:
            client.wait()
            raise click.ClickException(f"the soak client exited with {client.returncode}")
        ready = orjson.loads(ready_line)
        begin = time.monotonic()
        click.echo(
            f"{ready['ready']} steady connections open in {ready['connect_seconds']:.1f} s"
            f" ({ready['failed']} failed); load for {seconds:g} s",
            err=True,
        )
        samples: list[Sample] = []
        number = 0
        deadline = begin + seconds + CLIENT_EXIT_SECONDS
        while client.poll() is None and time.monotonic() < deadline:
            t = time.monotonic() - begin
            phase = "load" if t < seconds else "closing"  # the clients stop at `seconds`
            sample, _ = take_sample(server, t, phase)
            samples.append(sample)
            progress(sample, idle)
            number += 1
            pause = begin + number * sample_seconds - time.monotonic()
            while pause > 0 and client.poll() is None:
                time.sleep(min(pause, 0.2))
                pause = begin + number * sample_seconds - time.monotonic()
        if client.poll() is None:
            client.kill()
        rest, _ = client.communicate(timeout=30)
        lines = rest.decode().strip().splitlines()
        result = orjson.loads(lines[-1]) if lines and client.returncode == 0 else None
        ended = time.monotonic() - begin
        final, scrape, waited = settle(server, idle, ended, fd_slack)
        progress(final, idle)
        document |= {
            "client_exit": client.returncode,
            "ready": ready,
            "idle": idle,
            "final": final,
            "settle_seconds": waited,
            "samples": samples,
            "scrape": scrape,
            "result": result,
            "client_seconds": ended,
        }
    document["load_average_end"] = os.getloadavg()
    counts = result["counts"] if result else {}
    warmup = seconds * warmup_fraction
    checks = verdict(samples, idle, final, scrape, counts, warmup, fd_slack)
    checks.insert(
        0,
        Check(
            "client process exit",
            client.returncode == 0 and result is not None,
            f"exit status {client.returncode}, after {ended:.1f} s of {seconds:g} s load",
            "= 0, with its counts",
        ),
    )
    document["checks"] = checks
    document["warmup_seconds"] = warmup
    return document


def source() -> str:
    """The commit the server ran from, and whether the tree had uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return f"{head}" + (f" with {len(changed)} files changed, uncommitted" if changed else "")


def _mib(value: float) -> str:
    return f"{value / 2**20:.2f} MiB ({value:,.0f} B)"


def markdown(document: dict[str, Any], header: str) -> str:
    checks: list[Check] = document["checks"]
    idle: Sample = document["idle"]
    final: Sample = document["final"]
    samples: list[Sample] = document["samples"]
    scrape: Scrape = document["scrape"]
    counts = (document["result"] or {}).get("counts", {})
    passed = all(check.passed for check in checks)
    lines = [
        header,
        f"**{'PASS' if passed else 'FAIL'}**: {sum(c.passed for c in checks)} of {len(checks)}"
        " checks passed.",
        "",
        table(checks),
        "### Figures",
        "",
        f"- server: `{document['server']}`",
        f"- idle before the load: RSS {_mib(idle.rss)}, {idle.fds} descriptors"
        f" {idle.fds_by_process}",
        f"- after the load (settled {document['settle_seconds']:.1f} s): RSS {_mib(final.rss)},"
        f" {final.fds} descriptors {final.fds_by_process}",
        f"- steady connections open: {document['ready']['ready']} in"
        f" {document['ready']['connect_seconds']:.2f} s ({document['ready']['failed']} failed);"
        f" warm-up {document['warmup_seconds']:g} s; RSS medians of {MEDIAN_OF} samples",
        f"- load average (1, 5, 15 min) at start {document['load_average_start']},"
        f" at end {document['load_average_end']}",
    ]
    load = [s for s in samples if s.phase == "load"]
    if load:
        lines.append(
            f"- during the load: RSS min {_mib(min(s.rss for s in load))}, max"
            f" {_mib(max(s.rss for s in load))}; descriptors min {min(s.fds for s in load)},"
            f" max {max(s.fds for s in load)}; active max {max(s.active for s in load):g}"
        )
    for kind in ("opened", "closed", "sent", "replies", "deliveries", "bad_sent", "failures"):
        lines.append(f"- clients {kind}: {dict(sorted(counts.get(kind, {}).items()))}")
    total_sent = sum(counts.get("sent", {}).values())
    lines.append(
        f"- messages the clients sent: {total_sent:,} valid + "
        f"{sum(counts.get('bad_sent', {}).values()):,} bad"
    )
    for name in (
        "wsmon_messages_sent_total",
        "wsmon_deliveries_dropped_total",
        "wsmon_connections_closed_total",
    ):
        series = {
            ",".join(f"{k}={v}" for k, v in sorted(labels)): value
            for labels, value in scrape.series(name).items()
            if value
        }
        lines.append(f"- server {name}: {dict(sorted(series.items()))}")
    lines += [
        "",
        "### Samples",
        "",
        "| t (s) | phase | RSS (MiB) | RSS (B) | descriptors | active |",
        "|---|---|---|---|---|---|",
    ]
    for s in [idle, *samples, final]:
        lines.append(
            f"| {s.t:.1f} | {s.phase} | {s.rss / 2**20:.2f} | {s.rss:,} | {s.fds} | {s.active:g} |"
        )
    return "\n".join(lines) + "\n"


def _json_default(value: object) -> Any:
    if isinstance(value, Sample | Check):
        return asdict(value)
    if isinstance(value, Scrape):
        return {
            f"{name}{{{','.join(f'{k}={v}' for k, v in sorted(labels))}}}": number
            for (name, labels), number in sorted(value.samples.items(), key=str)
        }
    raise TypeError(type(value).__name__)


HELP_EPILOG = f"""
\b
Checks (each printed with its raw figures; exit status 1 when any fails):
  RSS growth after warm-up   median RSS of the {MEDIAN_OF} load samples nearest the end of
                             warm-up against the median of the last {MEDIAN_OF}:
                             < {GROWTH_LIMIT_PERCENT:g} %
  descriptors back to idle   every server process's /proc/PID/fd after the clients have gone,
                             ≤ the idle count before the load + --fd-slack
  counters balance           /metrics once idle against the clients' own counts: connections
                             opened = closed = welcomes; closes by code; messages received by
                             type; client errors by kind; replies sent; no restarts or failures
\b
Examples:
  make soak                                   # the real thing: 10 minutes, about 11 in all
  make soak ARGS='--minutes 1 --connections 200'
"""


@click.command(context_settings={"help_option_names": ["-h", "--help"]}, epilog=HELP_EPILOG)
@click.option(
    "--minutes",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    help="How long the load runs, after the steady connections are open.",
)
@click.option(
    "--connections",
    type=click.IntRange(min=1),
    default=EXTREME.connections,
    show_default=True,
    help=f"Steady connections (the extreme profile's), each sending one message every"
    f" {EXTREME.interval:g} s.",
)
@click.option(
    "--churn-per-second",
    type=click.FloatRange(min=0),
    default=20.0,
    show_default=True,
    help="Extra connections opened a second, each sending join, echo, ping, chat and leave,"
    " then closing with 1000.",
)
@click.option(
    "--bad-per-second",
    type=click.FloatRange(min=0),
    default=2.0,
    show_default=True,
    help=f"Connections a second sending one bad frame each, in turn: {', '.join(BAD_KINDS)}.",
)
@click.option(
    "--warmup-fraction",
    type=click.FloatRange(min=0, max=1, max_open=True),
    default=0.2,
    show_default=True,
    help="Share of the load that is warm-up: RSS growth counts from its end.",
)
@click.option(
    "--sample-seconds",
    type=click.FloatRange(min=0.1),
    default=10.0,
    show_default=True,
    help="Seconds between samples of RSS, descriptors and /metrics (one progress line each).",
)
@click.option(
    "--workers", type=click.IntRange(min=1), default=2, show_default=True, help="Server workers."
)
@click.option(
    "--fd-slack",
    type=click.IntRange(min=0),
    default=5,
    show_default=True,
    help="Descriptors the server may hold, after the load, above its idle count before it.",
)
@click.option(
    "--mix",
    default=DEFAULT_MIX,
    show_default=True,
    help="The steady connections' message types and weights (as `wsmon loadtest --mix`).",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("reports"),
    show_default=True,
    help="Directory for soak-<date>.md and .json.",
)
def main(
    minutes: float,
    connections: int,
    churn_per_second: float,
    bad_per_second: float,
    warmup_fraction: float,
    sample_seconds: float,
    workers: int,
    fd_slack: int,
    mix: str,
    out: Path,
) -> None:
    """Soak wsmon: the extreme profile plus churn and bad input; memory, descriptors, counters.

    Starts `wsmon serve --workers 2` on a free port (authentication off, its rate limits at their
    defaults), opens the steady connections from a separate client process, then runs steady
    messages, churn and bad input together for --minutes. Every --sample-seconds it prints one
    line: elapsed time, the server's RSS (every process), its open descriptors and
    wsmon_connections_active. Once the clients have closed it judges, prints the verdict with
    every figure, and writes reports/soak-<date>.md and .json (--out). Exit status 0 when every
    check passed, 1 when one failed.
    """
    started = time.monotonic()
    stamp = datetime.datetime.now().strftime("%Y-%m-%d-%H%M%S")
    document = run(
        minutes,
        connections,
        churn_per_second,
        bad_per_second,
        warmup_fraction,
        sample_seconds,
        workers,
        fd_slack,
        mix,
    )
    command = shlex.join(["python", "-P", "-m", "wsmon.loadgen.bench.soak", *sys.argv[1:]])
    header = (
        f"## wsmon soak, {stamp}\n\nMachine: {machine()}. Took {time.monotonic() - started:.0f} s"
        f" (`{command}`): {connections} steady connections, {churn_per_second:g} churn and"
        f" {bad_per_second:g} bad-input connections a second, for {minutes:g} min; samples every"
        f" {sample_seconds:g} s. Source: {source()}.\n"
    )
    text = markdown(document, header)
    click.echo(text)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"soak-{stamp}.md").write_text(text)
    document |= {"date": stamp, "command": command, "machine": machine()}
    (out / f"soak-{stamp}.json").write_bytes(
        orjson.dumps(
            document,
            default=_json_default,
            option=orjson.OPT_INDENT_2 | orjson.OPT_PASSTHROUGH_DATACLASS,
        )
    )
    click.echo(f"wrote {out / f'soak-{stamp}.md'} and .json", err=True)
    sys.exit(0 if all(check.passed for check in document["checks"]) else 1)


if __name__ == "__main__":
    main()
