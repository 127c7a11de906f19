"""GET /probe?module=server|pool|echo: a Testing-tab check of this server, for Prometheus.

Blackbox-exporter style: Prometheus scrapes /probe as a job of its own, and the answer is the
probe's result in the exposition format (wsmon_probe_success and the check's figures), never part
of /metrics. The check connects the way a client does, to the address and port the probe request
itself arrived on, so it goes through the listening socket and the hand-off like any client. It
gets the time Prometheus allows the scrape (its X-Prometheus-Scrape-Timeout-Seconds header) less
a margin, and each worker runs at most MAX_CONCURRENT probes at once: one more is answered 429
rather than queued, since a queued probe would only time out.
"""

from __future__ import annotations

from typing import Any, Final

from aiohttp import web
from prometheus_client import CollectorRegistry, Gauge, generate_latest

from wsmon.catalogue import PROBE_MODULES, PROBE_SPECS

from . import selftest

MAX_CONCURRENT: Final = 2
DEFAULT_BUDGET: Final = 10.0  # seconds, without the header (Prometheus' default scrape timeout)
MARGIN: Final = 0.5  # seconds left to write the answer before Prometheus gives up
TEXT: Final = "text/plain; version=0.0.4; charset=utf-8"


def budget(header: str | None) -> float:
    """Seconds the probe may take: what Prometheus allows, less the margin, within 1..60."""
    try:
        allowed = float(header) if header else DEFAULT_BUDGET
    except ValueError:
        allowed = DEFAULT_BUDGET
    return min(max(allowed - MARGIN, 1.0), 60.0)


def target(sockname: Any) -> str:
    """The /ws URL of the address a request arrived on (host, port[, flow, scope] for IPv6)."""
    host, port = sockname[0], sockname[1]
    return f"ws://[{host}]:{port}/ws" if ":" in host else f"ws://{host}:{port}/ws"


def public_target(host: str, port: int) -> str:
    """The /ws URL of the public port, for a probe that arrived on metrics_listen's: the
    wildcard addresses are reached on loopback."""
    reachable = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return target((reachable, port))


def render(result: selftest.Result) -> bytes:
    """The result in the text exposition format, with the catalogue's help for every series."""
    registry = CollectorRegistry(auto_describe=False)

    def gauge(name: str) -> Gauge:
        spec = PROBE_SPECS[name]
        return Gauge(name, spec.help, spec.labels, registry=registry)

    probe = result.probe
    gauge("wsmon_probe_success").labels(probe).set(1 if result.success else 0)
    gauge("wsmon_probe_duration_seconds").labels(probe).set(result.seconds)
    if result.steps:
        steps = gauge("wsmon_probe_step_duration_seconds")
        for step in result.steps:
            steps.labels(probe, step.name).set(step.seconds)
    if probe == "echo" and result.figures:
        trips = gauge("wsmon_probe_echo_round_trip_seconds")
        for figure, seconds in result.figures.items():
            trips.labels(figure).set(seconds)
    if probe == "pool" and result.workers:
        connections = gauge("wsmon_probe_pool_connections")
        for worker, count in sorted(result.workers.items()):
            connections.labels(str(worker)).set(count)
        gauge("wsmon_probe_pool_failed_connections").set(result.figures.get("failed", 0))
        if "spread" in result.figures:
            gauge("wsmon_probe_pool_spread_ratio").set(result.figures["spread"])
    return generate_latest(registry)


class Prober:
    """The /probe handler of one worker."""

    def __init__(self, workers: int, key: str | None = None, public: str | None = None) -> None:
        self.workers = workers  # the pool probe expects every one of them
        # Where to connect when not where the request came in (public_target).
        self._public = public
        # Its connections' credentials with authentication on: the pool's probe key.
        self._headers = {"Authorization": f"Bearer {key}"} if key else None
        self._running = 0

    async def _check(self, module: str, url: str, step: float) -> selftest.Result:
        headers = self._headers
        if module == "server":
            return await selftest.server(url, step, headers=headers)
        if module == "pool":
            return await selftest.pool(url, self.workers, step_timeout=step, headers=headers)
        return await selftest.echo(url, step_timeout=step, headers=headers)

    async def serve(self, request: web.Request) -> web.Response:
        module = request.query.get("module", "")
        if module not in PROBE_MODULES:
            return web.Response(
                status=400,
                text=f"unknown module {module!r}: use one of {', '.join(PROBE_MODULES)}\n",
            )
        if self._running >= MAX_CONCURRENT:
            return web.Response(
                status=429, text=f"{MAX_CONCURRENT} probes are running on this worker already\n"
            )
        sockname = request.transport.get_extra_info("sockname") if request.transport else None
        if sockname is None:  # the connection is already gone
            return web.Response(status=503, text="no local address to probe\n")
        url = self._public or target(sockname)
        step = budget(request.headers.get("X-Prometheus-Scrape-Timeout-Seconds"))
        step /= selftest.STEPS_PER_CHECK
        self._running += 1
        try:
            result = await self._check(module, url, step)
        finally:
            self._running -= 1
        return web.Response(body=render(result), headers={"Content-Type": TEXT})
