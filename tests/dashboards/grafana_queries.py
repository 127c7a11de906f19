"""The queries Grafana would send Prometheus for every panel of the generated dashboards.

Grafana cannot run here, so the dashboards are proven by their queries: this module reads the
Classic dashboard JSON, takes every target of every panel, substitutes the template variables and
the built-in interval variables the way Grafana's Prometheus data source does, picks the step it
would pick, and runs each query against a real Prometheus. What Grafana does is written next to
each function, from its sources (public/app/plugins/datasource/prometheus and
pkg/tsdb/prometheus, `rangeutil.roundInterval`, `gtime.FormatInterval`), so a reader can check it.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import aiohttp
import pytest

# A panel as wide as a screen draws ~1000 points: Grafana's maxDataPoints is the panel's width in
# pixels unless the panel sets it.
MAX_DATA_POINTS: Final = 1000
# Prometheus refuses a range query of more than 11,000 points; Grafana raises the step to fit.
MAX_POINTS_PER_SERIES: Final = 11_000
# Panels that draw no query. `text` is the only kind the design allows without targets; rows
# would only group panels (the design has none, but they would carry no query either).
TEXT_PANEL: Final = "text"
ROW_PANEL: Final = "row"
# Grafana's template-variable syntaxes: $name, [[name:format]], ${name:format} (and ${name.path}).
VARIABLE: Final = re.compile(
    r"\$(\w+)|\[\[(\w+?)(?::(\w+))?\]\]|\$\{(\w+)(?:\.[^:^}]+)?(?::([^}]+))?\}"
)
# Characters Grafana's prometheusSpecialRegexEscape escapes in a multi-value selection.
REGEX_SPECIAL: Final = re.compile(r"[$^*+?.()|\[\]{}]")
_DAY_MS: Final = 86_400_000
_UNITS_MS: Final = {
    "ms": 1,
    "s": 1000,
    "m": 60_000,
    "h": 3_600_000,
    "d": _DAY_MS,
    "w": 7 * _DAY_MS,
    "y": 365 * _DAY_MS,
}
_DURATION: Final = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
# A query variable's `label_values(selector, label)`: its options are that label's values.
LABEL_VALUES: Final = re.compile(r"^\s*label_values\((.+),\s*(\w+)\s*\)\s*$")


# -- the dashboards ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """One query of one panel, as written in the dashboard (variables not yet substituted)."""

    dashboard: str  # the dashboard's title
    panel_id: int
    panel: str  # the panel's title
    ref_id: str
    expr: str
    instant: bool  # Grafana also runs an instant query (tables, bar gauges: the latest value)
    min_interval: str  # the target's or the panel's "Min interval"; "" for the data source's

    def where(self) -> str:
        """Dashboard, panel and expression, for failure messages."""
        return f"{self.dashboard} / {self.panel!r} [{self.ref_id}]: {self.expr}"


@dataclass(frozen=True)
class Dashboard:
    path: Path
    document: dict[str, Any]

    @property
    def title(self) -> str:
        return str(self.document["title"])

    @property
    def uid(self) -> str:
        return str(self.document["uid"])

    @property
    def variables(self) -> list[dict[str, Any]]:
        variables: list[dict[str, Any]] = self.document.get("templating", {}).get("list", [])
        return variables

    def panels(self) -> Iterator[dict[str, Any]]:
        """Every panel, those inside rows included."""
        for panel in self.document.get("panels", []):
            yield panel
            yield from panel.get("panels", [])

    def text_panels(self) -> list[str]:
        return [str(p.get("title", "")) for p in self.panels() if p.get("type") == TEXT_PANEL]

    def queryless_panels(self) -> list[str]:
        """Panels that should have queries and have none (neither text nor row)."""
        return [
            str(p.get("title", ""))
            for p in self.panels()
            if p.get("type") not in (TEXT_PANEL, ROW_PANEL) and not p.get("targets")
        ]

    def targets(self) -> list[Target]:
        """Every visible target of every panel; hidden ones (`hide: true`) Grafana never runs."""
        return [
            Target(
                dashboard=self.title,
                panel_id=int(panel.get("id", 0)),
                panel=str(panel.get("title", "")),
                ref_id=str(target.get("refId", "")),
                expr=str(target["expr"]),
                instant=bool(target.get("instant")),
                min_interval=str(target.get("interval") or panel.get("interval") or ""),
            )
            for panel in self.panels()
            if panel.get("type") not in (TEXT_PANEL, ROW_PANEL)
            for target in panel.get("targets", [])
            if not target.get("hide")
        ]


def load_dashboards(directory: Path) -> list[Dashboard]:
    return [
        Dashboard(path, json.loads(path.read_text())) for path in sorted(directory.glob("*.json"))
    ]


# -- time: the step and the interval variables -------------------------------------------------


def parse_duration(text: str) -> float:
    """Seconds of a Grafana/Prometheus duration such as "1s", "5m", "1h30m"."""
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {text!r}")
    return sum(int(n) * _UNITS_MS[u] for n, u in parts) / 1000


# rangeutil.roundInterval: the raw interval (ms) rounded to a "nice" one, as (below, nice) pairs.
_NICE_MS: Final = (
    (15, 10),
    (35, 20),
    (75, 50),
    (150, 100),
    (350, 200),
    (750, 500),
    (1_500, 1_000),
    (3_500, 2_000),
    (7_500, 5_000),
    (12_500, 10_000),
    (17_500, 15_000),
    (25_000, 20_000),
    (45_000, 30_000),
    (90_000, 60_000),
    (210_000, 120_000),
    (450_000, 300_000),
    (750_000, 600_000),
    (1_050_000, 900_000),
    (1_500_000, 1_200_000),
    (2_700_000, 1_800_000),
    (5_400_000, 3_600_000),
    (9_000_000, 7_200_000),
    (16_200_000, 10_800_000),
    (32_400_000, 21_600_000),
    (86_400_000, 43_200_000),
    (604_800_000, 86_400_000),
    (1_814_400_000, 604_800_000),
    (3_628_800_000, 2_592_000_000),
)


def round_interval(ms: float) -> int:
    for below, nice in _NICE_MS:
        if ms < below:
            return nice
    return 31_536_000_000  # a year


def format_interval(seconds: float) -> str:
    """gtime.FormatInterval, which Grafana uses for $__interval: the largest unit, truncated."""
    ms = round(seconds * 1000)
    for unit in ("y", "d", "h", "m", "s", "ms"):
        if ms >= _UNITS_MS[unit]:
            return f"{ms // _UNITS_MS[unit]}{unit}"
    return "1ms"


def go_duration(seconds: float) -> str:
    """Go's time.Duration.String (whole milliseconds), which Grafana uses for $__rate_interval:
    "4s", "35m0s", "1h0m0s"; Prometheus parses all of them."""
    ms = round(seconds * 1000)
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs = f"{rest / 1000:g}s"
    if hours:
        return f"{hours}h{minutes}m{secs}"
    return f"{minutes}m{secs}" if minutes else secs


@dataclass(frozen=True)
class Window:
    """The dashboard's time range, and the data source's "Scrape interval" setting."""

    start: float  # Unix seconds
    end: float
    scrape_interval: float  # seconds; Grafana's default is 15s, set to the real one here

    @property
    def range(self) -> float:
        return self.end - self.start

    def step(self, target: Target) -> float:
        """The query step, which is also $__interval.

        range / maxDataPoints rounded to a nice value, at least the min interval (the target's,
        else the panel's, else the data source's scrape interval); Grafana then raises it so no
        series has more than 11,000 points (calculatePrometheusInterval).
        """
        low = parse_duration(target.min_interval) if target.min_interval else self.scrape_interval
        step = max(round_interval(self.range * 1000 / MAX_DATA_POINTS) / 1000, low)
        return max(step, math.ceil(self.range / MAX_POINTS_PER_SERIES))

    def rate_interval(self, target: Target) -> float:
        """max($__interval + scrape interval, 4 x scrape interval), with the data source's scrape
        interval whatever the min interval: a rate always spans four scrapes, and consecutive
        points' windows touch (calculateRateInterval)."""
        return max(self.step(target) + self.scrape_interval, 4 * self.scrape_interval)

    def builtins(self, target: Target) -> dict[str, str]:
        step, rate, seconds = self.step(target), self.rate_interval(target), round(self.range)
        # $__range is the range in whole seconds; $__range_ms is not rounded.
        return {
            "__interval": format_interval(step),
            "__interval_ms": str(round(step * 1000)),
            "__rate_interval": go_duration(rate),
            "__rate_interval_ms": str(round(rate * 1000)),
            "__range": f"{seconds}s",
            "__range_s": str(seconds),
            "__range_ms": str(round(self.range * 1000)),
        }


# -- template variables ------------------------------------------------------------------------


@dataclass(frozen=True)
class Choice:
    """What the user picked in one variable's drop-down: some values, or All (then `values` are
    every option, which Grafana uses when the variable has no custom all value)."""

    values: tuple[str, ...]
    all: bool = False


def _regex_escape(value: str) -> str:
    """prometheusSpecialRegexEscape: a regex escape written inside a PromQL string, so the
    backslash itself is doubled ("127.0.0.1" -> 127\\\\.0\\\\.0\\\\.1 in the expression)."""
    return REGEX_SPECIAL.sub(lambda m: "\\\\" + m.group(0), value.replace("\\", "\\\\\\\\"))


def format_choice(variable: Mapping[str, Any], choice: Choice, fmt: str | None) -> str:
    """A variable's value in a query, as the Prometheus data source's interpolateQueryExpr puts it.

    All with a custom all value (`allValue`, here '.*') is used as written, unformatted. A single-
    value variable is only quote-escaped; a multi-value or include-All one is regex-escaped, and
    several values become an alternation `(a|b)`. ${name:format} asks for another format.
    """
    if choice.all and variable.get("allValue"):
        return str(variable["allValue"])
    values = choice.values
    if fmt == "raw":
        return ",".join(values)
    if fmt == "pipe":
        return "|".join(values)
    if fmt == "regex":
        escaped = [re.escape(v) for v in values]
        return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"
    if fmt is not None:
        raise ValueError(f"format {fmt!r} of ${{{variable['name']}}} is not modelled here")
    if not variable.get("multi") and not variable.get("includeAll"):
        (value,) = values
        return value.replace("\\", "\\\\").replace("'", "\\\\'")
    escaped = [_regex_escape(v) for v in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def interpolate(
    expr: str,
    variables: Sequence[Mapping[str, Any]],
    choices: Mapping[str, Choice],
    builtins: Mapping[str, str],
) -> str:
    """`expr` with every variable replaced; ValueError for a name Grafana could not fill in
    (which it would leave in the query verbatim) or for the datasource variable, which is no
    PromQL. `$1`-style references (label_replace) are not variables and stay."""
    defined = {str(v["name"]): v for v in variables}

    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2) or match.group(4)
        fmt = match.group(3) or match.group(5)
        if name in builtins:
            return builtins[name]
        if name.isdigit():
            return match.group(0)
        variable = defined.get(name)
        if variable is None:
            raise ValueError(f"${name} is neither a dashboard variable nor a Grafana built-in")
        if variable.get("type") == "datasource":
            raise ValueError(
                f"${name} is the datasource variable: it selects Prometheus, not series"
            )
        if name not in choices:
            raise ValueError(f"no value chosen for ${name}")
        return format_choice(variable, choices[name], fmt)

    return VARIABLE.sub(replace, expr)


# -- running the queries -----------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    target: Target
    selection: str  # which choice of variables, e.g. "instance=All"
    query: str  # the expression as sent
    samples: int  # of the range query, all series together
    instant_series: int | None  # series of the instant query, for instant targets
    error: str = ""
    nan_only: bool = False  # every sample NaN (a quantile of nothing): data, but a blank panel

    @property
    def has_data(self) -> bool:
        return not self.error and self.samples > 0 and self.instant_series != 0

    def explain(self) -> str:
        if self.error:
            problem = self.error
        elif self.samples == 0:
            problem = "the range query returned no sample"
        else:
            problem = "the instant query (what a stat shows) returned no series"
        return (
            f"{self.target.where()}\n    with {self.selection}: {problem}\n    sent: {self.query}"
        )


class Prometheus:
    """The two HTTP query endpoints Grafana's Prometheus data source uses."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session, self.url = session, url

    async def _get(self, path: str, params: Mapping[str, str]) -> Any:
        async with self.session.get(f"{self.url}{path}", params=params) as response:
            body = await response.json()
        if body.get("status") != "success":
            raise QueryError(f"{body.get('errorType')}: {body.get('error')}")
        return body["data"]

    async def query(self, expr: str, at: float) -> list[dict[str, Any]]:
        data = await self._get("/api/v1/query", {"query": expr, "time": f"{at:.3f}"})
        result: list[dict[str, Any]] = data["result"]
        return result

    async def query_range(
        self, expr: str, start: float, end: float, step: float
    ) -> list[dict[str, Any]]:
        params = {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
        result: list[dict[str, Any]] = (await self._get("/api/v1/query_range", params))["result"]
        return result

    async def label_values(self, label: str, selector: str, start: float, end: float) -> list[str]:
        params = {"match[]": selector, "start": f"{start:.3f}", "end": f"{end:.3f}"}
        values: list[str] = await self._get(f"/api/v1/label/{label}/values", params)
        return values


class QueryError(Exception):
    """Prometheus refused a query (bad syntax, unknown function...)."""


async def run_target(
    prometheus: Prometheus,
    dashboard: Dashboard,
    target: Target,
    window: Window,
    choices: Mapping[str, Choice],
    selection: str,
) -> Outcome:
    """One target as Grafana runs it: a range query over the window, with its start and end
    aligned to the step (Grafana's alignTimeRange); an instant target is also run at the end.
    (An instant-only target gets the range query too: it proves the same series, at every step.)
    """
    step = window.step(target)
    try:
        query = interpolate(target.expr, dashboard.variables, choices, window.builtins(target))
    except ValueError as exc:
        return Outcome(target, selection, target.expr, 0, None, f"cannot substitute: {exc}")
    start, end = math.floor(window.start / step) * step, math.floor(window.end / step) * step
    try:
        result = await prometheus.query_range(query, start, end, step)
        instant = len(await prometheus.query(query, window.end)) if target.instant else None
    except QueryError as exc:
        return Outcome(target, selection, query, 0, None, f"Prometheus refused it: {exc}")
    values = [value for series in result for _, value in series.get("values", [])]
    nan_only = bool(values) and all(value == "NaN" for value in values)
    return Outcome(target, selection, query, len(values), instant, nan_only=nan_only)


async def options(
    prometheus: Prometheus,
    dashboard: Dashboard,
    name: str,
    choices: Mapping[str, Choice],
    window: Window,
) -> list[str]:
    """The drop-down of query variable `name`: Grafana runs its `label_values(selector, label)`
    (with the variables it depends on substituted) as a series query over the time range."""
    (variable,) = [v for v in dashboard.variables if v["name"] == name]
    query = variable["query"]
    text = str(query["query"] if isinstance(query, dict) else query)
    found = LABEL_VALUES.match(text)
    if found is None:
        raise ValueError(f"{dashboard.title}: ${name} is not a label_values() query: {text}")
    selector = interpolate(found.group(1), dashboard.variables, choices, {})
    return await prometheus.label_values(found.group(2), selector, window.start, window.end)


async def run_all(
    prometheus: Prometheus,
    dashboards: Sequence[Dashboard],
    window: Window,
    selections: Mapping[str, Mapping[str, Choice]],
    concurrency: int = 8,
) -> list[Outcome]:
    """Every target of every dashboard under every selection of the variables; a few at a time,
    so Prometheus (on a shared 2-core machine) is busy but not swamped."""
    gate = asyncio.Semaphore(concurrency)

    async def one(
        dashboard: Dashboard, target: Target, name: str, choices: Mapping[str, Choice]
    ) -> Outcome:
        async with gate:
            return await run_target(prometheus, dashboard, target, window, choices, name)

    return list(
        await asyncio.gather(
            *(
                one(dashboard, target, name, choices)
                for dashboard in dashboards
                for target in dashboard.targets()
                for name, choices in selections.items()
            )
        )
    )


def report(outcomes: Sequence[Outcome], dashboards: Sequence[Dashboard]) -> str:
    """A summary line per dashboard: targets, queries run, queries with data, text panels."""
    lines = []
    for dashboard in dashboards:
        mine = [o for o in outcomes if o.target.dashboard == dashboard.title]
        targets = {(o.target.panel_id, o.target.ref_id) for o in mine}
        lines.append(
            f"{dashboard.title}: {len(targets)} targets, {len(mine)} queries, "
            f"{sum(o.has_data for o in mine)} with data, "
            f"{len(dashboard.text_panels())} text panels without queries"
        )
    lines.extend(
        f"  NaN only: {o.target.where()} with {o.selection}" for o in outcomes if o.nan_only
    )
    return "\n".join(lines)


def require_data(outcomes: Sequence[Outcome], dashboards: Sequence[Dashboard]) -> None:
    """Fail naming every query (dashboard, panel, expression, what was sent) that returned no
    data, and every panel that has no query although it is no text panel (it would say "No
    data" whatever Prometheus holds)."""
    problems = [
        f"{dashboard.title} / {title!r}: no targets, and not a text panel"
        for dashboard in dashboards
        for title in dashboard.queryless_panels()
    ]
    empty = [outcome for outcome in outcomes if not outcome.has_data]
    problems += [outcome.explain() for outcome in empty]
    if not outcomes or problems:
        pytest.fail(
            f"{len(empty)} of {len(outcomes)} queries returned no data:\n" + "\n".join(problems),
            pytrace=False,
        )
