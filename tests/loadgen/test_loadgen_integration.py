"""`wsmon loadtest` against real `wsmon serve` processes, as CI runs it.

Runs are short (a few seconds, tens of connections) so the module stays well under a minute and a
half on two cores; each still crosses the thresholds it is meant to.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import struct
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from support.delay_proxy import delayed
from support.processes import CHROMIUM_FLAGS

from wsmon.loadgen.local_server import is_listening

if TYPE_CHECKING:
    from conftest import LoadtestResult
    from support.metrics import Metrics
    from support.processes import Wsmon

    Loadtest = Callable[..., LoadtestResult]

pytestmark = pytest.mark.integration

ALL_TYPES_MIX = "echo=4,ping=1,chat=2,publish=1,notify=1,broadcast=1"
MIX_TYPES = {item.split("=")[0] for item in ALL_TYPES_MIX.split(",")}
REPLY_TYPES = ("echo", "pong", "ack")
DELIVERY_TYPES = ("chat", "publish", "notify", "broadcast")


@pytest.fixture(scope="module")
def server(server_factory: Callable[..., Wsmon]) -> Wsmon:
    return server_factory("--workers", "2")


@dataclass
class CustomRun:
    result: LoadtestResult
    report: dict[str, Any]
    before: Metrics
    after: Metrics
    html: Path

    def delta(self, name: str, **labels: str) -> float:
        return self.after.delta(self.before, name, **labels)


@pytest.fixture(scope="module")
def custom_run(
    server: Wsmon, loadtest: Loadtest, tmp_path_factory: pytest.TempPathFactory
) -> CustomRun:
    """One short custom run through the guide's script, with every message type in the mix."""
    html = tmp_path_factory.mktemp("custom") / "report.html"
    before = server.scrape()
    result = loadtest(
        "custom",
        "--connections",
        "20",
        "--interval",
        "0.1",
        "--duration",
        "3",
        "--mix",
        ALL_TYPES_MIX,
        "--seed",
        "42",
        "--url",
        server.ws_url(),
        "--html",
        str(html),
        script=True,
    )
    after = server.scrape()
    assert result.report is not None, result.stdout + result.stderr
    return CustomRun(result, result.report, before, after, html)


def test_light_profile_passes_and_writes_default_reports(
    server: Wsmon, loadtest: Loadtest, tmp_path: Path
) -> None:
    result = loadtest(
        "light",
        "--url",
        server.ws_url(),
        "--duration",
        "2",
        "--ramp-up",
        "0.5",
        "--reports-dir",
        str(tmp_path),
        "--quiet",
        default_reports=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "result: PASSED, every threshold holds" in result.stdout
    names = sorted(path.name for path in tmp_path.iterdir())
    assert len(names) == 2
    assert re.fullmatch(r"loadtest-light-\d{8}-\d{6}\.html", names[0])
    assert names[1] == names[0].replace(".html", ".json")
    assert f"reports: {tmp_path / names[1]}, {tmp_path / names[0]}" in result.stdout
    report = json.loads((tmp_path / names[1]).read_text())
    assert report["connection"] == {
        "attempted": 50,
        "succeeded": 50,
        "failed": 0,
        "success_pct": 100.0,
        "errors": {},
        "dropped": {},
    }
    assert report["messages"]["success_pct"] == 100.0
    assert sum(report["workers"]["connections"].values()) == 50
    assert set(report["workers"]["connections"]) == {"w0", "w1"}


def test_custom_run_through_the_script_passes(custom_run: CustomRun) -> None:
    result, report = custom_run.result, custom_run.report
    assert result.returncode == 0, result.stdout + result.stderr
    assert report["connection"]["succeeded"] == 20
    assert report["messages"]["failed"] == 0
    # 20 connections at 10 messages a second for 3 s after a 1 s ramp-up: about 700 messages.
    assert 600 <= report["messages"]["attempted"] <= 800
    assert report["rate"]["planned_per_s"] == 200
    assert all(t["passed"] for t in report["thresholds"])
    # The live progress line (a log, not a terminal: the first second, then every 5 s).
    assert re.search(r"\[\s*1\.0 s\] connections \d+/20 · \d+ msg/s · p99 so far", result.stderr)


def test_counts_agree_with_the_servers_own_counters(custom_run: CustomRun) -> None:
    report, delta = custom_run.report, custom_run.delta
    messages = report["messages"]
    frames = dict(messages["sent_by_type"])
    for setup_type, n in messages["setup_frames"].items():
        frames[setup_type] = frames.get(setup_type, 0) + n
    assert set(frames) == {*MIX_TYPES, "join", "subscribe", "identify"}
    for message_type, n in frames.items():
        assert delta("wsmon_messages_received_total", type=message_type) == n, message_type
    assert delta("wsmon_messages_received_total", type="invalid") == 0
    replies = sum(delta("wsmon_messages_sent_total", type=t) for t in REPLY_TYPES)
    assert replies == messages["succeeded"]
    for delivery_type in DELIVERY_TYPES:
        assert (
            delta("wsmon_messages_sent_total", type=delivery_type)
            == (messages["deliveries"][delivery_type])
        ), delivery_type
    opened = report["connection"]["succeeded"] + report["probes"]
    assert delta("wsmon_connections_opened_total") == opened
    assert delta("wsmon_messages_sent_total", type="welcome") == opened
    assert delta("wsmon_client_errors_total") == 0


def test_tiny_worker_capacity_fails_connection_success(
    server_factory: Callable[..., Wsmon], loadtest: Loadtest
) -> None:
    full = server_factory("--workers", "2", "--worker-capacity", "5")
    before = full.scrape()
    url = full.ws_url()
    result = loadtest(
        "custom", "--connections", "20", "--interval", "0.2", "--duration", "2", "--url", url
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.report is not None
    connection = result.report["connection"]
    assert connection["succeeded"] <= 10
    assert connection["success_pct"] < 95
    refused = connection["errors"]["closed_1013"]
    assert connection["succeeded"] + refused == 20
    rejected = full.scrape().delta(before, "wsmon_connections_rejected_total", reason="capacity")
    assert rejected == refused
    verdicts = {t["threshold"]: t["passed"] for t in result.report["thresholds"]}
    assert verdicts["connection_success>95%"] is False
    assert "FAIL  connection_success>95%" in result.stdout
    assert "closed_1013" in result.stdout


def test_slowed_server_fails_the_latency_threshold(
    server_factory: Callable[..., Wsmon], loadtest: Loadtest
) -> None:
    server = server_factory("--workers", "1")
    with delayed(server.port, 0.3) as slow:
        result = loadtest(
            "custom",
            "--connections",
            "10",
            "--interval",
            "0.5",
            "--duration",
            "2",
            "--mix",
            "echo=1",
            "--url",
            f"ws://127.0.0.1:{slow.port}/ws",
        )
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.report is not None
    p99 = next(t for t in result.report["thresholds"] if t["metric"] == "p99")
    assert p99["passed"] is False
    assert p99["observed"] >= 300
    assert result.report["latency"]["p50_ms"] >= 300
    assert "FAIL  p99<200ms" in result.stdout


def test_start_server_serves_a_silent_loopback_target_and_stops_it(loadtest: Loadtest) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = loadtest(
        "custom",
        "--connections",
        "10",
        "--interval",
        "0.2",
        "--duration",
        "1",
        "--url",
        f"ws://127.0.0.1:{port}/ws",
        "--start-server",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"started wsmon serve on 127.0.0.1:{port}" in result.stderr
    assert result.report is not None
    assert result.report["connection"]["succeeded"] == 10
    assert not is_listening("127.0.0.1", port)


# -- the HTML report in a real browser ------------------------------------------------------

# Appended to a copy of the report: the browser's own layout says where each chart and mark is.
LAYOUT_PROBE = """<script>
const out = {};
for (const svg of document.querySelectorAll("svg.chart")) {
  const box = svg.getBoundingClientRect();
  const marks = [...svg.querySelectorAll(".point, .bar")];
  const inside = marks.filter((m) => {
    const b = m.getBoundingClientRect();
    return b.left >= box.left - 3 && b.right <= box.right + 3 &&
           b.top >= box.top - 3 && b.bottom <= box.bottom + 3;
  });
  out[svg.id] = {width: box.width, height: box.height, marks: marks.length,
                 drawn: marks.filter((m) => m.getBBox().width > 0).length, inside: inside.length,
                 lines: svg.querySelectorAll("polyline").length};
}
const pre = document.createElement("pre");
pre.id = "layout";
pre.textContent = JSON.stringify(out);
document.body.appendChild(pre);
</script>"""


def chromium(*args: str, user_data: Path) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("chromium")
    assert binary, "chromium is missing: `make tools` installs the Debian package"
    return subprocess.run(
        [
            binary,
            "--headless",
            *CHROMIUM_FLAGS,
            f"--user-data-dir={user_data}",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )


def test_html_report_renders_its_charts_in_chromium(custom_run: CustomRun, tmp_path: Path) -> None:
    report = custom_run.report
    page = custom_run.html.read_text()
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", LAYOUT_PROBE + "</body>"))
    dom = chromium("--dump-dom", probe.as_uri(), user_data=tmp_path / "profile").stdout
    match = re.search(r'<pre id="layout">(.*?)</pre>', dom)
    assert match, dom[-2000:]
    layout = json.loads(match.group(1))

    timeline = report["timeline"]
    expected_marks = {
        "chart-latency-time": sum(
            p[key] is not None for p in timeline for key in ("p50_ms", "p99_ms", "max_ms")
        ),
        "chart-throughput": 3 * len(timeline),
        "chart-latency-distribution": len(
            _trimmed([n for _, n in report["latency"]["distribution"]])
        ),
        "chart-workers": len(report["workers"]["connections"]),
    }
    assert set(layout) == set(expected_marks)
    for chart, marks in expected_marks.items():
        drawn = layout[chart]
        assert drawn["width"] > 600, chart
        assert drawn["height"] > 200, chart
        assert marks > 0, chart
        assert drawn["marks"] == drawn["inside"] == marks, (chart, drawn)
    assert layout["chart-workers"]["drawn"] == 2
    assert layout["chart-latency-time"]["lines"] >= 3
    assert 'id="verdict" class="verdict pass"' in dom

    screenshot = tmp_path / "report.png"
    chromium(
        "--hide-scrollbars",
        "--window-size=900,2400",
        f"--screenshot={screenshot}",
        custom_run.html.as_uri(),
        user_data=tmp_path / "profile",
    )
    png = screenshot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", png[16:24]) == (900, 2400)
    assert len(png) > 50_000  # text and four charts, not a blank page


def _trimmed(counts: list[int]) -> list[int]:
    filled = [i for i, n in enumerate(counts) if n]
    return counts[filled[0] : filled[-1] + 1]
