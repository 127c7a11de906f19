"""The recorder: every attempt ends in exactly one bucket; percentiles and the timeline."""

from __future__ import annotations

import pytest

from wsmon.loadgen.stats import NOT_SENT, TIMEOUT, Latencies, Recorder, nearest_rank


def test_every_attempt_is_a_reply_or_a_failure() -> None:
    recorder = Recorder()
    for _ in range(5):
        recorder.message_sent("echo")
    recorder.message_sent("chat")
    recorder.reply(0.002)
    recorder.reply(0.004)
    recorder.failed("error:rate_limited")
    recorder.failed(TIMEOUT, 3)
    recorder.not_sent(4)
    assert recorder.in_flight == 0
    assert recorder.attempted == 10
    assert recorder.replies + recorder.failures.total() == recorder.attempted
    assert recorder.failures == {"error:rate_limited": 1, TIMEOUT: 3, NOT_SENT: 4}


def test_latencies_are_within_a_tenth_of_a_percent() -> None:
    latencies = Latencies()
    for microseconds in range(1, 10_001):
        latencies.record(microseconds * 100)  # 0.1 ms .. 1 s, evenly
    assert latencies.count == 10_000
    assert latencies.percentile_ms(50) == pytest.approx(500, rel=1e-3)
    assert latencies.percentile_ms(99) == pytest.approx(990, rel=1e-3)
    assert latencies.max_ms() == pytest.approx(1000, rel=1e-3)
    assert latencies.min_ms() == pytest.approx(0.1, rel=1e-3)
    assert latencies.mean_ms() == pytest.approx(500.05, rel=1e-3)


def test_latencies_beyond_the_range_are_clamped_not_lost() -> None:
    latencies = Latencies()
    latencies.record(0)
    latencies.record(3_600_000_000)  # an hour
    assert latencies.count == 2
    assert latencies.max_ms() == pytest.approx(60_000, rel=1e-3)


def test_empty_latencies_have_no_statistics() -> None:
    latencies = Latencies()
    assert (latencies.percentile_ms(99), latencies.mean_ms(), latencies.max_ms()) == (
        None,
        None,
        None,
    )


def test_bucket_counts_cover_every_recorded_value() -> None:
    latencies = Latencies()
    for ms in (0.05, 0.5, 0.7, 3, 250, 90_000):
        latencies.record(int(ms * 1000))
    assert latencies.bucket_counts([0.0, 0.1, 1.0, 10.0, 100.0]) == [1, 2, 1, 2]


def test_nearest_rank() -> None:
    values = list(range(1, 101))
    assert nearest_rank(values, 50) == 50
    assert nearest_rank(values, 99) == 99
    assert nearest_rank(values, 100) == 100
    assert nearest_rank([7], 99) == 7


def test_tick_closes_one_second_of_counts_and_latencies() -> None:
    recorder = Recorder()
    recorder.connections_open = 3
    for _ in range(4):
        recorder.message_sent("echo")
    for seconds in (0.001, 0.002, 0.003):
        recorder.reply(seconds)
    first = recorder.tick(1)
    assert (first.t, first.connections, first.attempted, first.replies, first.failures) == (
        1,
        3,
        4,
        3,
        0,
    )
    assert (first.p50_ms, first.p99_ms, first.max_ms) == (2.0, 3.0, 3.0)
    recorder.failed(TIMEOUT)
    second = recorder.tick(2)
    assert (second.attempted, second.replies, second.failures) == (0, 0, 1)
    assert second.p99_ms is None
    assert recorder.timeline == [first, second]
