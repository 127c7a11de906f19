"""`wsmon export` without a process: the time grid and its chunks, the writers, the atomic file,
the selectors and times it takes, its bad-input errors, and an answer that is not Prometheus'.

The real Prometheus runs are in test_export.py.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner

from wsmon.catalogue import HISTOGRAM, SPECS
from wsmon.cli import main
from wsmon.dashboards.export import (
    DEFAULT_METRICS,
    MAX_POINTS,
    CsvWriter,
    Grid,
    JsonWriter,
    Progress,
    Series,
    atomic_text,
    label_text,
    moment,
    parse_selector,
    rfc3339,
    span_text,
    unknown_metrics,
)

# -- the grid ----------------------------------------------------------------------------------


def _points(grid: Grid, chunks: list[tuple[int, int]]) -> list[int]:
    return [t for start, end in chunks for t in range(start, end + 1, grid.step_ms)]


@pytest.mark.parametrize(
    ("span_s", "step_s"),
    [
        (30 * 86_400, 300),  # the default export: 8,641 points, one request
        (30 * 86_400, 15),  # 172,801 points: 16 requests
        (2 * 86_400, 15),  # 11,521 points: two
        (10_999 * 60, 60),  # 11,000 points exactly: still one
        (11_000 * 60, 60),  # 11,001: two, the second of one point
        (3_600, 1.5),  # a step with milliseconds
    ],
)
def test_chunks_cover_the_grid_once_and_stay_under_the_limit(span_s: int, step_s: float) -> None:
    start = 1_795_000_000
    grid = Grid.aligned(start, start + span_s, step_s)
    chunks = grid.chunks()
    step_ms = round(step_s * 1000)
    assert _points(grid, chunks) == list(range(grid.start_ms, grid.end_ms + 1, step_ms))
    assert len(chunks) == -(-grid.points // MAX_POINTS)  # as few requests as the limit allows
    for chunk_start, chunk_end in chunks:
        # Prometheus refuses (end - start) / step > 11,000; each asks for at most 11,000 points.
        assert (chunk_end - chunk_start) // step_ms + 1 <= MAX_POINTS
    for (_, end), (next_start, _) in itertools.pairwise(chunks):
        assert next_start == end + step_ms  # no gap, no overlap


def test_grid_is_aligned_on_multiples_of_the_step_inside_the_range() -> None:
    grid = Grid.aligned(1000.4, 1899.9, 300)
    assert (grid.start_ms, grid.end_ms, grid.points) == (1_200_000, 1_800_000, 3)
    assert Grid.aligned(900, 1200, 300).chunks(max_points=2) == [(900_000, 1_200_000)]
    assert Grid.aligned(900, 1500, 300).chunks(max_points=2) == [
        (900_000, 1_200_000),
        (1_500_000, 1_500_000),
    ]
    with pytest.raises(ValueError, match="shorter than one step"):
        Grid.aligned(1001, 1199, 300)


# -- writers and the file ----------------------------------------------------------------------

SERIES = [
    Series(
        "m", {"job": "wsmon", "b": "x;y\\z"}, [(1_796_000_000, "1.5"), (1_796_000_000.25, "NaN")]
    ),
    Series("n", {}, [(1_796_000_300, "+Inf")]),
]


def _written(writer: CsvWriter | JsonWriter, series: list[Series]) -> str:
    out = io.StringIO()
    writer.begin(out)
    for one in series:
        writer.series(out, one)
    writer.end(out)
    return out.getvalue()


def test_csv_has_one_row_per_sample_with_escaped_sorted_labels() -> None:
    text = _written(CsvWriter(), SERIES)
    assert list(csv.reader(io.StringIO(text))) == [
        ["metric", "labels", "timestamp", "value"],
        ["m", "b=x\\;y\\\\z;job=wsmon", "2026-11-30T00:53:20Z", "1.5"],
        ["m", "b=x\\;y\\\\z;job=wsmon", "2026-11-30T00:53:20.250Z", "NaN"],
        ["n", "", "2026-11-30T00:58:20Z", "+Inf"],
    ]
    assert "\r" not in text


def test_json_is_a_list_of_series_with_prometheus_pairs() -> None:
    assert json.loads(_written(JsonWriter(), SERIES)) == [
        {
            "metric": "m",
            "labels": {"b": "x;y\\z", "job": "wsmon"},
            "samples": [[1_796_000_000, "1.5"], [1_796_000_000.25, "NaN"]],
        },
        {"metric": "n", "labels": {}, "samples": [[1_796_000_300, "+Inf"]]},
    ]
    assert json.loads(_written(JsonWriter(), [])) == []


def test_label_text_times_and_spans() -> None:
    assert label_text({"z": "1", "a": "2"}) == "a=2;z=1"
    assert rfc3339(0) == "1970-01-01T00:00:00Z"
    assert rfc3339(1.5) == "1970-01-01T00:00:01.500Z"
    assert [span_text(s) for s in (28 * 86_400, 4.5 * 3_600, 720, 40)] == [
        "28.0 days",
        "4.5 hours",
        "12 minutes",
        "40 seconds",
    ]


def test_atomic_file_appears_only_on_success(tmp_path: Path) -> None:
    path = tmp_path / "export.csv"
    path.write_text("previous\n")

    def fail_halfway() -> None:
        with atomic_text(path) as out:
            out.write("half")
            raise RuntimeError("Prometheus went away")

    with pytest.raises(RuntimeError):
        fail_halfway()
    assert path.read_text() == "previous\n"
    assert [p.name for p in tmp_path.iterdir()] == ["export.csv"]
    umask = os.umask(0o022)
    try:
        with atomic_text(path) as out:
            out.write("whole\n")
    finally:
        os.umask(umask)
    assert path.read_text() == "whole\n"
    assert path.stat().st_mode & 0o777 == 0o644  # as any file the user writes, not mkstemp's 0600


# -- what the command takes ----------------------------------------------------------------------


def test_default_metrics_are_raw_series_of_the_catalogue() -> None:
    for name in DEFAULT_METRICS:
        family = next(
            (name.removesuffix(s) for s in ("_sum", "_count") if name.removesuffix(s) in SPECS),
            name,
        )
        assert family in SPECS, name
        assert (SPECS[family].kind == HISTOGRAM) == (family != name), name


@pytest.mark.parametrize(
    "text",
    [
        "wsmon_up",
        "a:b_c",
        'm{a="1"}',
        ' m { a = "1" , b!~"x|y", c=~".*",} ',
        'm{a="q\\"uote"}',
        "m{}",
    ],
)
def test_selectors_accepted(text: str) -> None:
    assert parse_selector(text) == text.split("{")[0].strip()


@pytest.mark.parametrize(
    "text",
    ["rate(m[5m])", "m[5m]", 'm{a="1"} + n', '{a="1"}', "m offset 1w", "sum(m)", "1m", "m{a=1}"],
)
def test_selectors_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a series selector"):
        parse_selector(text)


def test_unknown_metrics_are_named_with_their_closest_match() -> None:
    known = {"wsmon_connections_active", "up"}
    assert unknown_metrics(["wsmon_conections_active"], known, "http://p:9090") == (
        "unknown metric 'wsmon_conections_active' (did you mean wsmon_connections_active?):"
        " Prometheus at http://p:9090 has no series of that name"
    )
    assert unknown_metrics(["wsmon_nothing_like_it", "upp"], known, "http://p:9090") == (
        "unknown metrics 'wsmon_nothing_like_it', 'upp' (did you mean up?):"
        " Prometheus at http://p:9090 has no series of these names"
    )


def test_moments() -> None:
    now = 1_796_000_000.0
    assert moment("30d", now) == now - 30 * 86_400
    assert moment("1h30m", now) == now - 5_400
    assert moment("0s", now) == now
    assert moment("2026-11-01T00:00:00Z", now) == 1_793_491_200
    assert moment("2026-11-01", now) == 1_793_491_200  # a date is midnight UTC
    assert moment("2026-11-01T01:00:00+01:00", now) == 1_793_491_200
    with pytest.raises(ValueError, match="neither a duration"):
        moment("yesterday", now)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_a_bar_on_a_terminal_lines_elsewhere_and_nothing_when_quiet() -> None:
    terminal, pipe, quiet = _Terminal(), io.StringIO(), _Terminal()
    for stream, is_quiet in ((terminal, False), (pipe, False), (quiet, True)):
        progress = Progress(4, is_quiet, stream)
        for _ in range(4):
            progress.request()
        progress.metric("wsmon_up", 2, 10)
        progress.close()
    assert "exporting" in terminal.getvalue()
    assert "4/4" in terminal.getvalue()
    assert "wsmon_up" not in terminal.getvalue()  # the bar says it all
    assert pipe.getvalue() == "wsmon_up: 2 series, 10 samples\n"
    assert quiet.getvalue() == ""


# -- bad input, before any request -----------------------------------------------------------------


def wsmon_export(*argv: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["export", *argv])
    assert isinstance(result.exception, SystemExit | None), result.exception  # no traceback
    # `output`, not `stderr`: click 8.1 (the oldest allowed) mixes the two, and on a refusal
    # nothing goes to stdout.
    return result.exit_code, result.output


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--step", "5 minutes"], "not a duration like 30s, 5m, 2h or 1h30m: '5 minutes'"),
        (["--step", "0s"], "the step must be at least 1ms"),
        (["--since", "last week"], "neither a duration back from now"),
        (["--since", "1h", "--until", "2h"], "--since ("),
        (
            ["--since", "2026-11-01T00:10:00Z", "--until", "2026-11-01T00:20:00Z", "--step", "1h"],
            "shorter than one step",
        ),
        (["--metric", "rate(wsmon_up[5m])"], "Invalid value for '--metric': not a series selector"),
        (["--prometheus", "localhost:9090"], "not an http:// or https:// URL: 'localhost:9090'"),
        (["--format", "xml"], "Invalid value for '--format'"),
    ],
)
def test_bad_input_is_a_usage_error(tmp_path: Path, argv: list[str], message: str) -> None:
    # Nothing listens on port 9 (discard): any request would fail with exit 2 too, so the
    # message is what proves the error came first.
    code, said = wsmon_export(
        "--prometheus", "http://127.0.0.1:9", *argv, "--output", str(tmp_path / "x")
    )
    assert code == 2, said
    assert message in said
    assert not list(tmp_path.iterdir())


def test_output_must_be_writable_before_any_query(tmp_path: Path) -> None:
    code, said = wsmon_export("--output", str(tmp_path / "missing" / "x.csv"))
    assert code == 2
    assert f"{tmp_path / 'missing'} does not exist" in said
    code, said = wsmon_export("--output", str(tmp_path))
    assert code == 2
    assert "is a directory" in said


# -- an answer that is not Prometheus' -------------------------------------------------------------


class _Impostor(BaseHTTPRequestHandler):
    body = b"<html><body>Sign in to continue</body></html>"
    range_body = b""  # for /api/v1/query_range, when set
    content_type = "text/html"

    def do_GET(self) -> None:
        body = self.range_body if "/query_range" in self.path and self.range_body else self.body
        self.send_response(200)
        self.send_header("Content-Type", self.content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass


@pytest.fixture
def impostor() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Impostor)
    # Polled every 20 ms: shutdown() waits for the next poll (0.5 s by default, every test).
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    _Impostor.body = b"<html><body>Sign in to continue</body></html>"
    _Impostor.range_body = b""


def test_an_answer_that_is_not_prometheus_is_a_clear_error(impostor: str, tmp_path: Path) -> None:
    code, said = wsmon_export("--prometheus", impostor, "--output", str(tmp_path / "x.csv"))
    assert code == 1
    assert said == (
        f"Error: GET /label/__name__/values: the answer from {impostor} is not JSON, so not from"
        " Prometheus' HTTP API (a proxy or another service?); it starts:"
        " '<html><body>Sign in to continue</body></html>'\n"
    )
    _Impostor.body = json.dumps({"status": "success", "data": {"names": []}}).encode()
    code, said = wsmon_export("--prometheus", impostor, "--output", str(tmp_path / "x.csv"))
    assert code == 1
    assert "is not what Prometheus' HTTP API returns (expected a JSON list, got an object)" in said
    assert not list(tmp_path.iterdir())
    _Impostor.body = json.dumps({"status": "success", "data": ["wsmon_up"]}).encode()
    matrix = {"resultType": "matrix", "result": [{"metric": {}, "values": [[1, 2]]}]}
    _Impostor.range_body = json.dumps({"status": "success", "data": matrix}).encode()
    code, said = wsmon_export(
        "--prometheus", impostor, "--metric", "wsmon_up", "--output", str(tmp_path / "x.csv")
    )
    assert code == 1
    assert 'is not what Prometheus\' HTTP API returns (expected a [time, "value"] pair' in said
    assert not list(tmp_path.iterdir())
