"""`wsmon export` against a real Prometheus holding two backfilled days of the default series.

The days are written by backfill.write (the Historical test's generator) every 5 minutes, on
multiples of 5 minutes, imported with `promtool tsdb create-blocks-from openmetrics`, and read
back through the installed `wsmon export`, as an operator runs it. With --step equal to the
sample interval the export must be the backfill itself: every series, every timestamp, every
value. One Prometheus serves the whole module.
"""

from __future__ import annotations

import csv
import json
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest
from backfill import DAY, create_blocks, specs_read, write
from support.processes import HOST, WSMON, free_port
from support.stack import Stack, prometheus_config

from wsmon.dashboards.export import DEFAULT_METRICS, MAX_POINTS, rfc3339

pytestmark = pytest.mark.integration

SPAN = 2 * DAY
INTERVAL = 300  # seconds between backfilled samples, and the export's --step
# A step 20 times finer: 2 days of it are 11,521 points per series, more than one request holds.
FINE_STEP = 15

# (metric, sorted labels) -> [(unix seconds, value)]
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], list[tuple[float, float]]]


@dataclass(frozen=True)
class Backfilled:
    url: str
    samples: Samples  # every sample written, of every series
    first: int
    last: int


def _parse_openmetrics(text: str) -> Samples:
    """The samples of backfill.write's text: `name{k="v",...} value timestamp` lines (its label
    values hold no comma, quote or brace)."""
    samples: Samples = {}
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        series, value, stamp = line.rsplit(" ", 2)
        name, _, labels = series.partition("{")
        pairs = [pair.split("=", 1) for pair in labels.rstrip("}").split(",")]
        key = (name, tuple(sorted((k, v.strip('"')) for k, v in pairs)))
        samples.setdefault(key, []).append((float(stamp), float(value)))
    return samples


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    """Module-wide (one Prometheus for every test); still named `stack`, so a failing test gets
    Prometheus' log attached."""
    started = Stack()
    yield started
    started.stop_all()


@pytest.fixture(scope="module")
def backfilled(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Backfilled:
    directory = tmp_path_factory.mktemp("export")
    # On the 5-minute grid, an hour back: the export's points then fall on the samples.
    last = int(time.time() - 3600) // INTERVAL * INTERVAL
    source = directory / "wsmon.om"
    # specs_read maps _sum/_count to their histogram and fails on a name not in the catalogue.
    with source.open("w") as out:
        write(out, specs_read(DEFAULT_METRICS), {}, last, SPAN, INTERVAL)
    wanted = set(DEFAULT_METRICS)
    samples = {k: v for k, v in _parse_openmetrics(source.read_text()).items() if k[0] in wanted}
    assert {name for name, _ in samples} == wanted, "the backfill lacks a default series"
    create_blocks(source, directory / "data")
    config = prometheus_config(directory / "prometheus.yml", {})
    _, url = stack.prometheus(config, directory / "data")
    return Backfilled(url, samples, last - SPAN, last)


def wsmon_export(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(WSMON), "export", *argv], capture_output=True, text=True, timeout=60, check=False
    )


def read_csv(path: Path) -> Samples:
    samples: Samples = {}
    with path.open(newline="") as rows:
        reader = csv.reader(rows)
        assert next(reader) == ["metric", "labels", "timestamp", "value"]
        for metric, labels, stamp, value in reader:
            pairs = [pair.split("=", 1) for pair in labels.split(";")]
            key = (metric, tuple((k, v) for k, v in pairs))
            moment = datetime.fromisoformat(stamp).timestamp()
            samples.setdefault(key, []).append((moment, float(value)))
    return samples


def read_json(path: Path) -> Samples:
    return {
        (item["metric"], tuple(sorted(item["labels"].items()))): [
            (float(t), float(v)) for t, v in item["samples"]
        ]
        for item in json.loads(path.read_text())
    }


@pytest.mark.parametrize(("fmt", "read"), [("csv", read_csv), ("json", read_json)])
def test_export_is_exactly_the_backfilled_samples_and_says_where_data_starts(
    backfilled: Backfilled, tmp_path: Path, fmt: str, read: Callable[[Path], Samples]
) -> None:
    output = tmp_path / f"export.{fmt}"
    result = wsmon_export(
        *("--prometheus", backfilled.url, "--since", "30d", "--until", rfc3339(backfilled.last)),
        *("--step", f"{INTERVAL}s", "--format", fmt, "--output", str(output)),
    )
    assert result.returncode == 0, result.stderr
    exported = read(output)
    assert set(exported) == set(backfilled.samples), "a series is missing or extra"
    assert exported == backfilled.samples
    # --since 30d asks for 28 days more than Prometheus holds: the rest is exported, and said.
    assert f"note: the data starts at {rfc3339(backfilled.first)}, 28.0 days after" in (
        result.stderr
    )
    every = sum(map(len, backfilled.samples.values()))
    assert f"wrote {len(backfilled.samples)} series, {every} samples" in result.stderr


def test_a_range_of_more_than_one_request_is_fetched_in_chunks(
    backfilled: Backfilled, tmp_path: Path
) -> None:
    since, until = rfc3339(backfilled.first), rfc3339(backfilled.last)
    points = SPAN // FINE_STEP + 1
    assert points > MAX_POINTS
    # Prometheus itself refuses the range in one request: the export has to cut it.
    query = urllib.parse.urlencode(
        {
            "query": "wsmon_connections_active",
            "start": backfilled.first,
            "end": backfilled.last,
            "step": FINE_STEP,
        }
    )
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(f"{backfilled.url}/api/v1/query_range?{query}", timeout=10)
    assert "exceeded maximum resolution of 11,000 points" in refused.value.read().decode()

    output = tmp_path / "fine.json"
    result = wsmon_export(
        *("--prometheus", backfilled.url, "--since", since, "--until", until),
        *("--step", f"{FINE_STEP}s", "--metric", "wsmon_connections_active"),
        *("--format", "json", "--output", str(output)),
    )
    assert result.returncode == 0, result.stderr
    exported = read_json(output)
    stored = {
        k: dict(v) for k, v in backfilled.samples.items() if k[0] == "wsmon_connections_active"
    }
    assert set(exported) == set(stored)
    grid = range(backfilled.first, backfilled.last + 1, FINE_STEP)
    for key, samples in exported.items():
        # Each point is the latest sample at or before it: every point once, none twice.
        expected = [(float(t), stored[key][t // INTERVAL * INTERVAL]) for t in grid]
        assert samples == expected, key
    assert f"wsmon_connections_active: {len(exported)} series, {len(exported) * points}" in (
        result.stderr
    )


def test_unknown_metric_is_named_with_a_close_match_and_nothing_is_written(
    backfilled: Backfilled, tmp_path: Path
) -> None:
    output = tmp_path / "export.csv"
    output.write_text("the previous export\n")
    result = wsmon_export(
        *("--prometheus", backfilled.url, "--metric", "wsmon_connections_active"),
        *("--metric", 'wsmon_conections_active{worker="0"}', "--output", str(output)),
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr == (
        "Error: unknown metric 'wsmon_conections_active' (did you mean wsmon_connections_active?):"
        f" Prometheus at {backfilled.url} has no series of that name\n"
    )
    assert output.read_text() == "the previous export\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export.csv"]


def test_unreachable_prometheus_is_one_line_and_exit_2(tmp_path: Path) -> None:
    nowhere = f"http://{HOST}:{free_port()}"
    output = tmp_path / "export.csv"
    result = wsmon_export("--prometheus", nowhere, "--output", str(output))
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"Error: cannot reach Prometheus at {nowhere}: ")
    assert result.stderr.count("\n") == 1, result.stderr  # one line, no traceback
    assert not list(tmp_path.iterdir())
