"""`wsmon test server|pool|echo`: the Testing tab's checks of a running server, from a shell."""

from __future__ import annotations

import asyncio
import json
import sys
import urllib.parse
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import aiohttp
import click
from prometheus_client.parser import text_string_to_metric_families

from . import selftest

DEFAULT_URL = "ws://127.0.0.1:8080/ws"
PASSED, FAILED, NOT_RUN = 0, 1, 2


def _ws_url(_ctx: click.Context, _param: click.Parameter, url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise click.BadParameter(f"expected ws://HOST:PORT/ws or wss://…, got {url!r}")
    return url


def _common(command: Callable[..., None]) -> Callable[..., None]:
    for option in reversed(
        (
            click.option(
                "--url",
                default=DEFAULT_URL,
                show_default=True,
                callback=_ws_url,
                help="The server's /ws endpoint.",
            ),
            click.option(
                "--timeout",
                "step_timeout",
                type=click.FloatRange(min=0.1),
                default=selftest.DEFAULT_STEP_TIMEOUT,
                show_default=True,
                help="Seconds a step (handshake, a reply) may take; a whole test,"
                f" {selftest.STEPS_PER_CHECK} times it.",
            ),
            click.option(
                "--token-file",
                type=click.Path(path_type=Path, dir_okay=False, exists=True),
                envvar="WSMON_TOKEN_FILE",
                help="File holding the token to connect with, for a server with authentication"
                " on (sent as Authorization: Bearer). [env WSMON_TOKEN_FILE]",
            ),
            click.option("--json", "as_json", is_flag=True, help="Print the result as JSON."),
        )
    ):
        command = option(command)
    return command


def _headers(token_file: Path | None) -> dict[str, str] | None:
    """The handshake's credentials: a token is read from a file, never taken on the command
    line (where `ps` and shell history would show it)."""
    if token_file is None:
        return None
    return {"Authorization": f"Bearer {token_file.read_text().strip()}"}


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f} ms"


def _report(result: selftest.Result, as_json: bool, lines: list[str]) -> None:
    """Print the result and exit 0 (passed), 1 (failed) or 2 (could not reach the server)."""
    if as_json:
        click.echo(json.dumps(result.to_json(), indent=2))
    else:
        if not result.reachable:
            click.echo(f"{result.probe} test of {result.url}: could not run: {result.error}")
        else:
            verdict = "PASSED" if result.success else f"FAILED: {result.error}"
            click.echo(f"{result.probe} test of {result.url}: {verdict} ({_ms(result.seconds)})")
            for line in lines:
                click.echo(f"  {line}")
    sys.exit(PASSED if result.success else FAILED if result.reachable else NOT_RUN)


def _run(check: Coroutine[Any, Any, selftest.Result]) -> selftest.Result:
    return asyncio.run(check)


@click.group()
def test_group() -> None:
    """Test a running server as its clients see it: exit 0 passed, 1 failed, 2 could not run.

    \b
      wsmon test server                     # handshake, welcome frame, ping/pong; each step timed
      wsmon test pool --per-worker 8        # every worker takes connections, and evenly
      wsmon test echo --count 100 --size 1024 --url ws://10.0.0.5:8080/ws
      wsmon test echo --json                # for scripts: figures in seconds

    Prometheus runs the same checks through the server's own GET /probe?module=server|pool|echo.
    """


@test_group.command("server")
@_common
def server_command(url: str, step_timeout: float, token_file: Path | None, as_json: bool) -> None:
    """The handshake, the welcome frame and a ping answered by its pong, each timed."""
    result = _run(selftest.server(url, step_timeout, _headers(token_file)))
    _report(result, as_json, [f"{step.name:<10} {_ms(step.seconds)}" for step in result.steps])


async def _worker_count(url: str, step_timeout: float) -> int:
    """How many workers the server runs: its wsmon_pool_capacity series, one per worker."""
    parts = urllib.parse.urlsplit(url)
    scheme = "https" if parts.scheme == "wss" else "http"
    metrics = f"{scheme}://{parts.netloc}/metrics"
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=step_timeout)) as session,
            session.get(metrics) as response,
        ):
            response.raise_for_status()
            text = await response.text()
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise click.ClickException(
            f"cannot read the worker count from {metrics} ({selftest.describe(exc)});"
            " pass --workers"
        ) from None
    for family in text_string_to_metric_families(text):
        if family.name == "wsmon_pool_capacity":
            return len(family.samples)
    raise click.ClickException(f"{metrics} has no wsmon_pool_capacity: pass --workers")


@test_group.command("pool")
@_common
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    help="Workers to expect.  [default: as many as the server's /metrics lists]",
)
@click.option(
    "--per-worker",
    type=click.IntRange(min=1),
    default=selftest.DEFAULT_PER_WORKER,
    show_default=True,
    help="Connections to open per worker, all held open together.",
)
@click.option(
    "--max-spread",
    type=click.FloatRange(min=1.0),
    default=selftest.DEFAULT_MAX_SPREAD,
    show_default=True,
    help="Fail when the most loaded worker got more than this many times the least loaded's.",
)
def pool_command(
    url: str,
    step_timeout: float,
    token_file: Path | None,
    as_json: bool,
    workers: int | None,
    per_worker: int,
    max_spread: float,
) -> None:
    """Open enough connections to reach every worker; their spread over the pool."""

    async def check() -> selftest.Result:
        expected = workers if workers is not None else await _worker_count(url, step_timeout)
        return await selftest.pool(
            url, expected, per_worker, max_spread, step_timeout, _headers(token_file)
        )

    try:
        result = _run(check())
    except click.ClickException as exc:
        click.echo(f"pool test of {url}: could not run: {exc.message}", err=True)
        sys.exit(NOT_RUN)
    spread = result.figures.get("spread")
    lines = [f"worker {index:<3} {count}" for index, count in sorted(result.workers.items())]
    if spread is not None:
        lines.append(f"spread     {spread:.2f} (at most {max_spread:g})")
    _report(result, as_json, lines)


@test_group.command("echo")
@_common
@click.option(
    "--count",
    type=click.IntRange(min=1, max=100_000),
    default=selftest.DEFAULT_ECHO_COUNT,
    show_default=True,
    help="Round trips, one after another.",
)
@click.option(
    "--size",
    type=click.IntRange(min=0),
    default=selftest.DEFAULT_ECHO_BYTES,
    show_default=True,
    help="Bytes of payload in each echo message.",
)
def echo_command(
    url: str, step_timeout: float, token_file: Path | None, as_json: bool, count: int, size: int
) -> None:
    """Round trips of echo messages through /ws: min / avg / p50 / p99 / max."""
    result = _run(selftest.echo(url, count, size, step_timeout, _headers(token_file)))
    figures = "  ".join(f"{name} {_ms(value)}" for name, value in result.figures.items())
    _report(result, as_json, [f"{count} round trips of {size} bytes", figures] if figures else [])
