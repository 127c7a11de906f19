"""`wsmon export`: the Historical dashboard's series out of Prometheus, as CSV or JSON.

Through /api/v1/query_range with raw selectors only (`NAME` or `NAME{...}`, no functions), so
each point is a stored sample: at every step, the latest sample at or before it (Prometheus'
5-minute lookback). With --step equal to the scrape interval that is each sample once. A range
is cut into requests of at most MAX_POINTS points per series, the most Prometheus answers.

Only the standard library and click: no Jsonnet, no aiohttp, nothing of the dashboards' build.
"""

from __future__ import annotations

import contextlib
import csv
import difflib
import json
import math
import os
import re
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Final, TextIO

import click

from wsmon import httpjson
from wsmon.thresholds import duration_seconds

DEFAULT_PROMETHEUS: Final = "http://127.0.0.1:9090"
# Prometheus refuses a query_range whose (end - start) / step exceeds 11,000; asking for at most
# 11,000 points (10,999 steps) keeps every request inside that, whatever the rounding.
MAX_POINTS: Final = 11_000
# A month of a busy metric is a heavy query: far longer than the API's usual answer time.
QUERY_TIMEOUT: Final = 120.0
# The raw series the Historical dashboard is built from (tests check each is in the catalogue).
DEFAULT_METRICS: Final = (
    "wsmon_connections_active",
    "wsmon_pool_capacity",
    "wsmon_messages_received_total",
    "wsmon_messages_sent_total",
    "wsmon_client_errors_total",
    "wsmon_message_failures_total",
    "wsmon_message_latency_seconds_sum",
    "wsmon_message_latency_seconds_count",
    "wsmon_connections_opened_total",
    "wsmon_connections_closed_total",
)
FORMATS: Final = ("csv", "json")

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_STRING = r'"(?:[^"\\]|\\.)*"'
_MATCHER = rf"\s*[a-zA-Z_][a-zA-Z0-9_]*\s*(?:=~|!~|!=|=)\s*{_STRING}\s*"
SELECTOR: Final = re.compile(rf"\s*({_NAME})\s*(\{{(?:{_MATCHER}(?:,{_MATCHER})*,?)?\s*\}})?\s*")


class ExportError(click.ClickException):
    """Bad input found only by asking Prometheus (an unknown metric), or Prometheus out of
    reach: exit 2, like a usage error, so scripts can tell it from a refused query (exit 1)."""

    exit_code = 2


# -- the time grid ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Grid:
    """Evaluation times start, start + step, ..., end, in integer milliseconds (Prometheus'
    resolution) so that chunk edges never drift by a float's rounding."""

    start_ms: int
    end_ms: int
    step_ms: int

    @classmethod
    def aligned(cls, start: float, end: float, step: float) -> Grid:
        """The grid of multiples of `step` within [start, end] (seconds): the same points for
        every export with that step, as Grafana aligns its queries. ValueError when the range
        holds no multiple of the step."""
        step_ms = round(step * 1000)
        if step_ms <= 0:
            raise ValueError(f"the step must be at least 1ms, got {step:g}s")
        first = math.ceil(round(start * 1000) / step_ms) * step_ms
        last = math.floor(round(end * 1000) / step_ms) * step_ms
        if first > last:
            raise ValueError("the range is shorter than one step: nothing to export")
        return cls(first, last, step_ms)

    @property
    def points(self) -> int:
        return (self.end_ms - self.start_ms) // self.step_ms + 1

    def chunks(self, max_points: int = MAX_POINTS) -> list[tuple[int, int]]:
        """(start_ms, end_ms) of consecutive requests of at most `max_points` points each:
        each starts one step after the previous one's end, so no point is asked for twice."""
        span = (max_points - 1) * self.step_ms
        return [
            (start, min(start + span, self.end_ms))
            for start in range(self.start_ms, self.end_ms + 1, span + self.step_ms)
        ]


# -- Prometheus ------------------------------------------------------------------------------------


def _data(payload: Any) -> Any:
    """The `data` of Prometheus' envelope ({"status": "success", "data": ...})."""
    envelope = httpjson.json_object(payload)
    if envelope["status"] != "success":
        raise httpjson.WrongShape(f"status {envelope['status']!r}")
    return envelope["data"]


@dataclass(frozen=True)
class Series:
    metric: str
    labels: dict[str, str]  # without __name__
    samples: list[tuple[float, str]] = field(default_factory=list)  # (unix seconds, value)


def _sample(raw: Any) -> tuple[float, str]:
    pair = httpjson.json_list(raw)
    if len(pair) != 2 or not isinstance(pair[0], int | float) or not isinstance(pair[1], str):
        raise httpjson.WrongShape(f'expected a [time, "value"] pair, got {raw!r:.60}')
    return float(pair[0]), pair[1]


def _series(raw: Any) -> Series:
    labels = {str(k): str(v) for k, v in httpjson.json_object(raw["metric"]).items()}
    samples = [_sample(pair) for pair in httpjson.json_list(raw["values"])]
    return Series(labels.pop("__name__", ""), labels, samples)


def _matrix(payload: Any) -> list[Series]:
    """A query_range answer's series, every part checked (so a wrong one is an error message,
    not a traceback)."""
    data = httpjson.json_object(_data(payload))
    if data["resultType"] != "matrix":
        raise httpjson.WrongShape(f"resultType {data['resultType']!r}, not a matrix")
    return [_series(httpjson.json_object(item)) for item in httpjson.json_list(data["result"])]


def _names(payload: Any) -> set[str]:
    return {str(name) for name in httpjson.json_list(_data(payload))}


class Prometheus:
    def __init__(self, base_url: str, timeout: float = QUERY_TIMEOUT) -> None:
        self.base_url = base_url.rstrip("/")
        self._api = httpjson.Api(
            self.base_url, "Prometheus", "Prometheus' HTTP API", "/api/v1", timeout
        )

    def metric_names(self) -> set[str]:
        """Every metric name Prometheus holds series of, over all of its history."""
        return self._api.call("GET", "/label/__name__/values", _names)

    def query_range(self, query: str, start_ms: int, end_ms: int, step_ms: int) -> list[Series]:
        params = {
            "query": query,
            "start": _seconds(start_ms),
            "end": _seconds(end_ms),
            "step": _seconds(step_ms),
        }
        path = f"/query_range?{urllib.parse.urlencode(params)}"
        return self._api.call("GET", path, _matrix)


def _seconds(ms: int) -> str:
    return f"{ms // 1000}.{ms % 1000:03d}"


# -- writers ---------------------------------------------------------------------------------------


def rfc3339(seconds: float) -> str:
    """`2026-12-01T21:55:00Z`, with milliseconds only when there are any."""
    ms = round(seconds * 1000)
    moment = datetime.fromtimestamp(ms // 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{moment}.{ms % 1000:03d}Z" if ms % 1000 else f"{moment}Z"


def label_text(labels: Mapping[str, str]) -> str:
    """`instance=10.0.0.1:8080;job=wsmon`, sorted; a `;` or `\\` in a value gets a backslash,
    so the column splits back unambiguously (a label name never holds either)."""
    escape = str.maketrans({"\\": "\\\\", ";": "\\;"})
    return ";".join(f"{k}={v.translate(escape)}" for k, v in sorted(labels.items()))


class Writer:
    """A format's header, its series one after the other, and its end."""

    def begin(self, out: IO[str]) -> None:
        pass

    def series(self, out: IO[str], series: Series) -> None:
        raise NotImplementedError

    def end(self, out: IO[str]) -> None:
        pass


class CsvWriter(Writer):
    """metric,labels,timestamp,value: one row per sample, the value as Prometheus wrote it."""

    def begin(self, out: IO[str]) -> None:
        csv.writer(out, lineterminator="\n").writerow(("metric", "labels", "timestamp", "value"))

    def series(self, out: IO[str], series: Series) -> None:
        labels = label_text(series.labels)
        csv.writer(out, lineterminator="\n").writerows(
            (series.metric, labels, rfc3339(t), value) for t, value in series.samples
        )


class JsonWriter(Writer):
    """A list of {"metric", "labels", "samples": [[unix seconds, "value"], ...]}, one series a
    line; the value stays Prometheus' string, as in its own API, so NaN and +Inf survive."""

    def __init__(self) -> None:
        self._first = True

    def begin(self, out: IO[str]) -> None:
        out.write("[")

    def series(self, out: IO[str], series: Series) -> None:
        item = {
            "metric": series.metric,
            "labels": dict(sorted(series.labels.items())),
            "samples": [[_number(t), value] for t, value in series.samples],
        }
        out.write(("\n" if self._first else ",\n") + json.dumps(item, separators=(",", ":")))
        self._first = False

    def end(self, out: IO[str]) -> None:
        out.write("]\n" if self._first else "\n]\n")


def _number(seconds: float) -> int | float:
    return int(seconds) if float(seconds).is_integer() else seconds


WRITERS: Final[Mapping[str, Callable[[], Writer]]] = {"csv": CsvWriter, "json": JsonWriter}


@contextlib.contextmanager
def atomic_text(path: Path) -> Iterator[IO[str]]:
    """A text file that appears at `path` only once the block succeeds: written next to it
    under a temporary name, then renamed over it; removed on any failure, so a failed export
    never leaves half a file (nor replaces a good one)."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    # os.open with 0o666: the umask applies, as for any file the user writes (mkstemp's is 0600).
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with open(descriptor, "w", encoding="utf-8", newline="") as out:
            yield out
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


# -- the export ------------------------------------------------------------------------------------


def parse_selector(text: str) -> str:
    """The metric name of a raw selector; ValueError for anything else (a function, a range)."""
    match = SELECTOR.fullmatch(text)
    if match is None:
        raise ValueError(
            f"not a series selector: {text!r}; give a metric name, optionally with label"
            ' matchers (wsmon_messages_sent_total{type="chat"}): the export is of stored'
            " samples, so functions, operators and [ranges] have no place in it"
        )
    return match.group(1)


def unknown_metrics(names: Sequence[str], known: set[str], url: str) -> str:
    """`unknown metric 'x' (did you mean y?): ...`, each name with the closest one Prometheus
    has, if any is close."""
    named = []
    for name in names:
        close = difflib.get_close_matches(name, sorted(known), n=1)
        named.append(f"{name!r}" + (f" (did you mean {close[0]}?)" if close else ""))
    if len(names) == 1:
        return f"unknown metric {named[0]}: Prometheus at {url} has no series of that name"
    return f"unknown metrics {', '.join(named)}: Prometheus at {url} has no series of these names"


def moment(text: str, now: float) -> float:
    """Unix seconds of `text`: a duration back from `now` (`30d`, `1h30m`) or an RFC 3339 time
    (`2026-11-01T00:00:00Z`; a date alone is midnight UTC). ValueError otherwise."""
    try:
        return now - duration_seconds(text)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"neither a duration back from now (30d, 12h, 1h30m) nor an RFC 3339 time"
            f" (2026-11-01T00:00:00Z): {text!r}"
        ) from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


@dataclass
class Report:
    series: int = 0
    samples: int = 0
    first: float | None = None  # the earliest sample's time, over every metric
    empty: list[str] = field(default_factory=list)  # selectors without a sample in the range


class Progress:
    """A bar over the requests on a terminal; one line per metric otherwise; or nothing."""

    def __init__(self, total: int, quiet: bool, stream: TextIO) -> None:
        self._stream = stream
        self._quiet = quiet
        self._bar: Any = None
        if not quiet and stream.isatty():
            self._bar = click.progressbar(
                length=total, label="exporting", file=stream, show_pos=True, show_eta=True
            )
            self._bar.__enter__()

    def request(self) -> None:
        if self._bar is not None:
            self._bar.update(1)

    def metric(self, selector: str, series: int, samples: int) -> None:
        if self._bar is None and not self._quiet:
            click.echo(f"{selector}: {series} series, {samples} samples", file=self._stream)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None


def export(
    prometheus: Prometheus,
    selectors: Sequence[str],
    grid: Grid,
    writer: Writer,
    out: IO[str],
    progress: Progress,
) -> Report:
    """Every series of every selector over `grid`, chunk by chunk, to `out` through `writer`:
    one selector at a time, so memory holds one metric's samples, not the whole export."""
    report = Report()
    chunks = grid.chunks()
    writer.begin(out)
    for selector in selectors:
        merged: dict[tuple[tuple[str, str], ...], Series] = {}
        for start_ms, end_ms in chunks:
            for part in prometheus.query_range(selector, start_ms, end_ms, grid.step_ms):
                key = (("__name__", part.metric), *sorted(part.labels.items()))
                merged.setdefault(key, Series(part.metric, part.labels)).samples.extend(
                    part.samples
                )
            progress.request()
        samples = 0
        for key in sorted(merged):
            series = merged[key]
            writer.series(out, series)
            samples += len(series.samples)
            first = series.samples[0][0]
            report.first = first if report.first is None else min(report.first, first)
        if not merged:
            report.empty.append(selector)
        report.series += len(merged)
        report.samples += samples
        progress.metric(selector, len(merged), samples)
    writer.end(out)
    return report


# -- the command -----------------------------------------------------------------------------------


def _prometheus_url(_ctx: click.Context, _param: click.Parameter, url: str) -> str:
    try:
        return httpjson.check_url(url, DEFAULT_PROMETHEUS)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _selectors(_ctx: click.Context, _param: click.Parameter, texts: tuple[str, ...]) -> list[str]:
    for text in texts:
        try:
            parse_selector(text)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None
    return [text.strip() for text in texts]


def _output(_ctx: click.Context, _param: click.Parameter, path: Path) -> Path:
    """Checked before any query: a long export must not fail at its very end."""
    if path.is_dir():
        raise click.BadParameter(f"{path} is a directory; give a file name")
    if not path.parent.is_dir():
        raise click.BadParameter(f"{path.parent} does not exist")
    if not os.access(path.parent, os.W_OK):
        raise click.BadParameter(f"cannot write in {path.parent}")
    return path


_DEFAULTS_TEXT = ", ".join(DEFAULT_METRICS)


@click.command(
    "export",
    epilog="The default metrics: " + _DEFAULTS_TEXT + ".",
)
@click.option(
    "--prometheus",
    "prometheus_url",
    envvar="WSMON_PROMETHEUS_URL",
    default=DEFAULT_PROMETHEUS,
    show_default=True,
    callback=_prometheus_url,
    help="Prometheus base URL, http:// or https://. [env WSMON_PROMETHEUS_URL]",
)
@click.option(
    "--since",
    default="30d",
    show_default=True,
    help="Start: a duration back from now (30d, 12h) or an RFC 3339 time (2026-11-01T00:00:00Z).",
)
@click.option(
    "--until",
    default="0s",
    show_default="now",
    help="End, in the same forms as --since.",
)
@click.option(
    "--step",
    default="5m",
    show_default=True,
    help="Time between points; the scrape interval gives every sample once.",
)
@click.option(
    "--metric",
    "selectors",
    multiple=True,
    callback=_selectors,
    help='A metric name or selector (NAME{label="value"}); repeatable. [default: the'
    " Historical dashboard's key series, listed below]",
)
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="csv", show_default=True)
@click.option(
    "--output",
    type=click.Path(path_type=Path),
    required=True,
    callback=_output,
    help="File to write; it appears only once the export is complete.",
)
@click.option(
    "--quiet",
    "-q",
    is_flag=True,
    help="Nothing on stderr but errors: no progress, notes or summary.",
)
def export_command(
    prometheus_url: str,
    since: str,
    until: str,
    step: str,
    selectors: list[str],
    fmt: str,
    output: Path,
    quiet: bool,
) -> None:
    """Export stored samples from Prometheus as CSV or JSON (the Historical tab's data export).

    Each point is a stored sample: at every multiple of --step, the latest sample at or before
    it (within Prometheus' 5-minute lookback), so a --step equal to the scrape interval gives
    every sample once, and a longer one thins them out. Long ranges are fetched in pieces of at
    most 11,000 points per series, the most Prometheus answers at once.

    \b
    CSV: metric,labels,timestamp,value; labels as k=v;k=v (sorted), the timestamp RFC 3339 UTC.
    JSON: [{"metric": ..., "labels": {...}, "samples": [[unix_seconds, "value"], ...]}, ...]

    \b
      wsmon export --output wsmon-30d.csv
      wsmon export --prometheus http://prometheus:9090 --since 7d --step 15s \\
          --metric wsmon_connections_active --metric 'wsmon_messages_sent_total{type="chat"}' \\
          --format json --output week.json
      wsmon export --since 2026-11-01 --until 2026-12-01 --step 1h --output november.csv

    Exits 2 when Prometheus cannot be reached or does not know a metric (nothing is written), 1
    when it refuses a query.
    """
    now = time.time()
    try:
        # Points after now would only repeat the last sample (the lookback), so the range ends now.
        start, end = moment(since, now), min(moment(until, now), now)
        step_seconds = duration_seconds(step)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    if start >= end:
        raise click.UsageError(
            f"--since ({rfc3339(start)}) must be before --until ({rfc3339(end)})"
        )
    try:
        grid = Grid.aligned(start, end, step_seconds)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None

    prometheus = Prometheus(prometheus_url)
    try:
        chosen = _known(prometheus, selectors, quiet)
        progress = Progress(len(chosen) * len(grid.chunks()), quiet, sys.stderr)
        try:
            with atomic_text(output) as out:
                report = export(prometheus, chosen, grid, WRITERS[fmt](), out, progress)
        finally:
            progress.close()
    except httpjson.Unreachable as exc:
        raise ExportError(str(exc)) from None
    except httpjson.ApiError as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"cannot write {output}: {exc.strerror or exc}") from None
    if quiet:
        return
    _notes(report, grid)
    click.echo(
        f"wrote {report.series} series, {report.samples} samples"
        f" ({rfc3339(grid.start_ms / 1000)} to {rfc3339(grid.end_ms / 1000)}) to {output}",
        err=True,
    )


def _known(prometheus: Prometheus, selectors: list[str], quiet: bool) -> list[str]:
    """The selectors to export. An unknown metric given with --metric is an error (exit 2);
    one of the defaults is skipped, since a counter appears only once it first counts."""
    known = prometheus.metric_names()
    if selectors:
        unknown = [name for name in map(parse_selector, selectors) if name not in known]
        if unknown:
            raise ExportError(unknown_metrics(unknown, known, prometheus.base_url))
        return selectors
    chosen: list[str] = [name for name in DEFAULT_METRICS if name in known]
    if not chosen:
        raise ExportError(
            f"Prometheus at {prometheus.base_url} has none of wsmon's series; is it scraping"
            " wsmon? (or name the series with --metric)"
        )
    if not quiet:
        for name in DEFAULT_METRICS:
            if name not in known:
                click.echo(f"note: Prometheus has no {name} (never counted yet): skipped", err=True)
    return chosen


def span_text(seconds: float) -> str:
    """`28.0 days`, `4.5 hours`, `12 minutes`, `40 seconds`: a gap as people say it."""
    for unit, size in (("days", 86_400), ("hours", 3_600)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds / 60:.0f} minutes" if seconds >= 60 else f"{seconds:.0f} seconds"


def _notes(report: Report, grid: Grid) -> None:
    """Where the range asked for more than Prometheus holds, say how far back the data goes."""
    for selector in report.empty:
        click.echo(f"note: {selector}: no samples in the range", err=True)
    if report.first is None:
        click.echo("note: Prometheus holds no samples of these series in the range", err=True)
    elif round(report.first * 1000) > grid.start_ms:
        click.echo(
            f"note: the data starts at {rfc3339(report.first)},"
            f" {span_text(report.first - grid.start_ms / 1000)} after the"
            f" start asked for ({rfc3339(grid.start_ms / 1000)}): exported from there",
            err=True,
        )
