"""The report built from known counts: figures, verdicts, and the three renderings agreeing."""

from __future__ import annotations

import json
import re

import pytest

from wsmon.loadgen.client import RunPlan, RunTimes
from wsmon.loadgen.cpu import CpuMeter, CpuUsage
from wsmon.loadgen.htmlreport import Scale, render_html
from wsmon.loadgen.profiles import parse_mix, resolve_profile
from wsmon.loadgen.report import Report, build, error_kinds, render_text
from wsmon.loadgen.stats import NOT_SENT, TIMEOUT, Recorder
from wsmon.loadgen.thresholds import DEFAULT_THRESHOLDS, merge, parse_threshold

PLAN = RunPlan(
    profile=resolve_profile("custom", connections=4, interval=0.5, duration=2, ramp_up=0),
    urls=("ws://127.0.0.1:9/ws",),
    mix=parse_mix("echo=1"),
    seed=7,
)


def recorded(*, refused: int = 0, slow: bool = False) -> Recorder:
    """4 connection attempts (`refused` of them refused with 1013), 2 s of messages."""
    recorder = Recorder()
    recorder.connections_attempted = 4
    recorder.connection_errors["closed_1013"] = refused
    for i in range(4 - refused):
        recorder.workers[f"w{i % 2}"] += 1
    for second in (1, 2):
        for i in range(100):
            recorder.message_sent("echo")
            recorder.reply((0.3 if slow else 0.001) + i / 100_000)
        recorder.tick(second)
    recorder.message_sent("echo")
    recorder.failed(TIMEOUT)
    recorder.not_sent(1)
    recorder.error_frames["too_many_memberships"] = 2  # answered no measured message
    recorder.tick(2.5)
    return recorder


def report_of(recorder: Recorder, *thresholds: str) -> Report:
    given = [parse_threshold(t) for t in thresholds]
    return build(
        PLAN,
        recorder,
        RunTimes(sending_ended=2.0, finished=2.5),
        CpuUsage(user_seconds=0.2, system_seconds=0.05, wall_seconds=2.5),
        merge(DEFAULT_THRESHOLDS, given),
        started_at="2026-11-27T12:00:00+00:00",
    )


def test_figures() -> None:
    report = report_of(recorded())
    assert (report.connection.attempted, report.connection.succeeded) == (4, 4)
    assert report.messages.attempted == 202
    assert report.messages.succeeded == 200
    assert report.messages.failures == {TIMEOUT: 1, NOT_SENT: 1}
    assert report.messages.success_pct == pytest.approx(100 * 200 / 202)
    assert report.rate.offered_per_s == pytest.approx(101)
    assert report.rate.achieved_per_s == pytest.approx(100)
    assert report.rate.planned_per_s == pytest.approx(8)
    assert report.workers.connections == {"w0": 2, "w1": 2}
    assert report.workers.spread == 1.0
    assert report.cpu.percent_of_core == pytest.approx(10)
    assert report.cpu.messages_per_cpu_second == pytest.approx(202 / 0.25)
    assert report.latency.count == 200
    assert report.latency.p50_ms == pytest.approx(1.5, rel=0.01)
    assert sum(n for _, n in report.latency.distribution) == 200
    assert error_kinds(report) == {TIMEOUT: 1, NOT_SENT: 1, "error_frame:too_many_memberships": 2}
    assert report.passed


def test_a_refusing_server_fails_connection_success_only() -> None:
    report = report_of(recorded(refused=2))
    assert report.connection.success_pct == 50.0
    assert [(t.threshold, t.passed) for t in report.thresholds] == [
        ("connection_success>95%", False),
        ("message_success>98%", True),
        ("p99<200ms", True),
    ]
    assert not report.passed
    text = render_text(report)
    assert "FAIL  connection_success>95%  observed 50.00 %" in text
    assert "closed_1013 2" in text
    assert "result: FAILED, connection_success>95% did not hold" in text


def test_a_slow_server_fails_the_latency_threshold() -> None:
    report = report_of(recorded(slow=True), "avg<250ms")
    verdicts = {t.threshold: t for t in report.thresholds}
    assert not verdicts["p99<200ms"].passed
    assert verdicts["p99<200ms"].observed == pytest.approx(301, rel=0.01)
    assert not verdicts["avg<250ms"].passed
    assert not report.passed


def test_text_summary_has_every_figure_the_issue_asks_for() -> None:
    text = render_text(report_of(recorded()))
    for expected in (
        "connections  4 of 4 succeeded   100.00 %",
        "messages     200 of 202 answered   99.01 %",
        "avg 1.",
        "p50 1.",
        "p90 1.",
        "p99 1.",
        "max 1.",
        "offered 101.0 msg/s   achieved 100.0 msg/s",
        "w0 2 · w1 2   spread max/min 1.00",
        "loadgen CPU  0.25 s over 2.5 s = 10.0 % of one core",
        "PASS  p99<200ms",
        "result: PASSED",
    ):
        assert expected in text


def test_json_round_trips_the_report() -> None:
    report = report_of(recorded())
    data = json.loads(report.to_json())
    assert data["messages"]["attempted"] == 202
    assert data["thresholds"][2] == {
        "threshold": "p99<200ms",
        "metric": "p99",
        "op": "<",
        "unit": "ms",
        "limit": 200.0,
        "observed": report.latency.p99_ms,
        "passed": True,
    }
    assert len(data["timeline"]) == 3


def test_html_is_self_contained_and_plots_every_value() -> None:
    report = report_of(recorded())
    page = render_html(report)
    assert "<script" not in page
    assert not re.search(r"""(?:src|href)=["']?(?:https?:)?//""", page)
    for chart in ("latency-time", "throughput", "latency-distribution", "workers"):
        assert f'id="chart-{chart}"' in page
    p99_points = re.findall(r'class="point" data-series="p99"', page)
    assert len(p99_points) == sum(1 for p in report.timeline if p.p99_ms is not None)
    workers = re.findall(r'class="bar" data-label="(w\d)" data-value="(\d+)"', page)
    assert workers == [("w0", "2"), ("w1", "2")]
    assert "PASSED: every threshold holds" in page


def test_scales_put_ticks_on_round_numbers() -> None:
    assert Scale(0, 230, 0, 100).ticks() == [0, 50, 100, 150, 200]
    assert Scale(0.1, 10, 0, 100, log=True).ticks() == pytest.approx([0.1, 0.2, 0.5, 1, 2, 5, 10])
    assert Scale(0.1, 1000, 0, 100, log=True).ticks() == pytest.approx([0.1, 1, 10, 100, 1000])
    log = Scale(1, 100, 200, 0, log=True)
    assert log(10) == pytest.approx(100)


def test_cpu_meter_counts_this_process() -> None:
    meter = CpuMeter()
    sum(i * i for i in range(300_000))
    usage = meter.read()
    assert usage.cpu_seconds > 0
    assert usage.wall_seconds > 0
