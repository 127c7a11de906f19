"""`make soak`'s harness: a short real run against `wsmon serve`; its verdict on synthetic figures.

The verdict tests give soak_checks samples and a /metrics scrape the test writes itself, so each
check is seen to fail on the figures it exists for: 6 % growth, a descriptor or a connection left
over, one counter off by one.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from wsmon.exporter import protocol
from wsmon.loadgen.bench import soak, soak_checks, soak_clients
from wsmon.loadgen.bench.soak_checks import Check, Sample, Scrape

REPO = Path(__file__).resolve().parents[2]


# -- a real run ----------------------------------------------------------------------------------


@pytest.mark.integration
def test_a_short_soak_passes_and_writes_its_report(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-P",
            "-m",
            "wsmon.loadgen.bench.soak",
            "--minutes",
            "0.15",
            "--connections",
            "50",
            "--churn-per-second",
            "5",
            "--bad-per-second",
            "2",
            "--sample-seconds",
            "1",
            "--out",
            str(tmp_path),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=90,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    reports = sorted(tmp_path.glob("soak-*.md"))
    assert len(reports) == 1
    assert reports[0].read_text() in done.stdout + "\n"
    out = done.stdout
    assert "**PASS**: 11 of 11 checks passed." in out
    assert re.search(r"\| RSS growth after warm-up \| -?\d+\.\d{3} % \(median at warm-up end", out)
    assert re.search(r"\| descriptors back to idle \| \d+ open after the load, \d+ before it", out)
    # 9 s of churn at 5 a second and bad input at 2 a second, beside the 50 steady connections.
    opened = re.search(
        r"wsmon_connections_opened_total = clients' welcomes \(steady \+ churn \+ bad\)"
        r" (\d+) = (\d+)",
        out,
    )
    assert opened is not None
    assert opened[1] == opened[2]
    assert 50 + 40 + 14 <= int(opened[1]) <= 50 + 46 + 19
    for reason in ("invalid_json", "unknown_type", "binary_frame", "too_large", "invalid_frame"):
        series = f'wsmon_client_errors_total{{type="invalid",reason="{reason}"}}'
        found = re.search(re.escape(series) + r" (\d+) = (\d+)", out)
        assert found is not None, series
        assert found[1] == found[2] != "0"
    assert 'wsmon_connections_closed_total{code="1009"}' in out
    # Progress: one line for each sample the report records, with its RSS, descriptors and active
    # connections. How many samples fit in 9 s depends on how fast the machine scrapes, and a
    # churn connection may be open beside the 50 steady ones, so neither is pinned here.
    document = json.loads(reports[0].with_suffix(".json").read_text())
    printed = re.findall(
        r"\] (load|closing) +rss +([\d.]+) MiB .* fds +(\d+) +active (\d+)", done.stderr
    )
    recorded = [
        (s["phase"], f"{s['rss'] / 2**20:.1f}", str(s["fds"]), f"{s['active']:g}")
        for s in document["samples"]
    ]
    assert printed == recorded
    assert sum(1 for s in document["samples"] if s["phase"] == "load" and s["active"] >= 50) >= 3
    assert all(check["passed"] for check in document["checks"])
    assert document["result"]["counts"]["opened"]["steady"] == 50
    assert {s["phase"] for s in document["samples"]} >= {"load"}


# -- the verdict ---------------------------------------------------------------------------------


def samples_growing(percent: float, seconds: int = 100) -> list[Sample]:
    """Load samples a second apart: flat at 100 MB for the first 20 s, then rising linearly to
    `percent` above it by the end."""
    base = 100_000_000
    out = []
    for t in range(seconds + 1):
        rise = 0.0 if t <= 20 else (t - 20) / (seconds - 20) * percent / 100
        out.append(Sample(float(t), "load", int(base * (1 + rise)), 50, 10))
    return out


def test_rss_growth_of_6_percent_fails_and_of_under_5_passes() -> None:
    failed = soak_checks.rss_growth(samples_growing(6.2), warmup_seconds=20)
    assert not failed.passed
    # The medians of t=19,20,21 and of the last three (98, 99, 100): ~6.05 % growth.
    assert 5.9 < failed.figures["growth_percent"] < 6.2
    assert failed.measured.startswith(f"{failed.figures['growth_percent']:.3f} %")
    assert "from t=19.0, 20.0, 21.0 s" in failed.measured
    assert "from t=98.0, 99.0, 100.0 s" in failed.measured
    # 6.2 % of 100 MB over the 80 s after warm-up: 4,650,000 B a minute.
    assert failed.figures["trend_bytes_per_minute"] == pytest.approx(4_650_000, rel=0.01)
    assert "least-squares trend after warm-up +4,6" in failed.measured
    assert soak_checks.rss_growth(samples_growing(4.8), warmup_seconds=20).passed


def test_rss_growth_ignores_the_closing_tail_and_needs_enough_samples() -> None:
    load = samples_growing(0.0)
    tail = [Sample(101.0 + i, "closing", 200_000_000, 50, 0) for i in range(3)]
    assert soak_checks.rss_growth([*load, *tail], warmup_seconds=20).passed
    short = soak_checks.rss_growth(load[:5], warmup_seconds=2)
    assert not short.passed
    assert "too few samples" in short.measured


def test_a_descriptor_or_a_connection_left_over_fails() -> None:
    idle = Sample(0.0, "idle", 100, 54, 0)
    fine = soak_checks.descriptors(idle, Sample(700.0, "after", 100, 59, 0), slack=5)
    assert [check.passed for check in fine] == [True, True]
    leaked = soak_checks.descriptors(idle, Sample(700.0, "after", 100, 60, 1), slack=5)
    assert [check.passed for check in leaked] == [False, False]
    assert leaked[0].measured.startswith("60 open after the load, 54 before it: +6")


def exposition(series: dict[str, float]) -> Scrape:
    return Scrape.parse("".join(f"{name} {value}\n" for name, value in series.items()))


def balanced() -> tuple[dict[str, float], dict[str, dict[str, int]]]:
    """A server's figures and the clients' counts that agree: 10 steady, 4 churn and 5 bad
    connections (one of each kind)."""
    bad = {kind: 1 for kind in soak_clients.BAD_KINDS}
    asked = {"echo": 34, "ping": 9, "chat": 10, "publish": 4, "join": 4, "leave": 4}
    counts = {
        "opened": {"steady": 10, "churn": 4, "bad": 5},
        "sent": {
            "join": 14,
            "subscribe": 10,
            "echo": 34,
            "ping": 9,
            "chat": 10,
            "publish": 4,
            "leave": 4,
        },
        "expected_replies": asked,
        "replies": dict(asked),
        "bad_sent": bad,
        "bad_answered": dict(bad),
        "failures": {},
        "skipped": {},
    }
    server = {
        'wsmon_connections_opened_total{worker="0"}': 10,
        'wsmon_connections_opened_total{worker="1"}': 9,
        'wsmon_connections_active{worker="0"}': 0,
        'wsmon_connections_closed_total{code="1000"}': 17,
        'wsmon_connections_closed_total{code="1007"}': 1,
        'wsmon_connections_closed_total{code="1009"}': 1,
        'wsmon_messages_received_total{type="join"}': 14,
        'wsmon_messages_received_total{type="subscribe"}': 10,
        'wsmon_messages_received_total{type="echo"}': 34,
        'wsmon_messages_received_total{type="ping"}': 9,
        'wsmon_messages_received_total{type="chat"}': 10,
        'wsmon_messages_received_total{type="publish"}': 4,
        'wsmon_messages_received_total{type="leave"}': 4,
        'wsmon_messages_received_total{type="broadcast"}': 0,
        'wsmon_messages_received_total{type="invalid"}': 5,
        'wsmon_client_errors_total{type="invalid",reason="invalid_json"}': 1,
        'wsmon_client_errors_total{type="invalid",reason="unknown_type"}': 1,
        'wsmon_client_errors_total{type="invalid",reason="binary_frame"}': 1,
        'wsmon_client_errors_total{type="invalid",reason="too_large"}': 1,
        'wsmon_client_errors_total{type="invalid",reason="invalid_frame"}': 1,
        'wsmon_messages_sent_total{type="welcome"}': 19,
        'wsmon_messages_sent_total{type="echo"}': 34,
        'wsmon_messages_sent_total{type="pong"}': 9,
        'wsmon_messages_sent_total{type="ack"}': 22,
        'wsmon_messages_sent_total{type="error"}': 3,
        'wsmon_messages_sent_total{type="chat"}': 90,
        'wsmon_worker_restarts_total{worker="0"}': 0,
        'wsmon_message_failures_total{type="echo",reason="internal_error"}': 0,
        "wsmon_workers_alive": 2,
        "wsmon_workers_configured": 2,
    }
    return server, counts


def failing(checks: list[Check]) -> list[str]:
    return [check.name for check in checks if not check.passed]


def test_counters_that_balance_pass() -> None:
    server, counts = balanced()
    checks = soak_checks.balance(exposition(server), counts)
    assert failing(checks) == []
    assert len(checks) == 7


@pytest.mark.parametrize(
    ("series", "value", "fails"),
    [
        # One message the server did not count (or counted twice).
        ('wsmon_messages_received_total{type="echo"}', 33, "messages received by type"),
        ('wsmon_messages_received_total{type="invalid"}', 6, "messages received by type"),
        # A connection closed that was never opened, and one still open.
        (
            'wsmon_connections_closed_total{code="1000"}',
            18,
            "connections: opened = closed, and = the clients' opened",
        ),
        ('wsmon_connections_closed_total{code="1006"}', 1, "closes by code"),
        # The oversized frame counted as another reason.
        (
            'wsmon_client_errors_total{type="invalid",reason="too_large"}',
            0,
            "client errors by kind",
        ),
        (
            'wsmon_client_errors_total{type="echo",reason="rate_limited"}',
            1,
            "client errors by kind",
        ),
        ('wsmon_messages_sent_total{type="ack"}', 21, "replies sent by type"),
        ('wsmon_worker_restarts_total{worker="1"}', 1, "no restarts, failures or refusals"),
        (
            'wsmon_message_failures_total{type="chat",reason="internal_error"}',
            1,
            "no restarts, failures or refusals",
        ),
        ("wsmon_workers_alive", 1, "no restarts, failures or refusals"),
    ],
)
def test_an_unbalanced_counter_fails_its_check(series: str, value: float, fails: str) -> None:
    server, counts = balanced()
    before = server.get(series)
    server[series] = value
    checks = soak_checks.balance(exposition(server), counts)
    assert fails in failing(checks)
    assert len(failing(checks)) <= 2  # closed 1000 off by one also shows in the closes by code
    wrong = next(check for check in checks if check.name == fails)
    # The mismatch is listed first, with both raw figures.
    assert "≠" in wrong.measured.split(";")[0], wrong.measured
    assert before != value


def test_what_the_clients_saw_go_wrong_fails() -> None:
    server, counts = balanced()
    counts["replies"]["echo"] -= 1
    counts["failures"] = {"steady_reply_missing": 1}
    checks = soak_checks.balance(exposition(server), counts)
    assert failing(checks) == ["clients: every reply came back, nothing failed"]
    assert "failure steady_reply_missing 1 ≠ 0" in checks[-2].measured
    assert "replies to echo 33 ≠ 34" in checks[-2].measured


def test_the_soak_reads_the_servers_names() -> None:
    """The protocol's error codes, which the soak keeps copies of (the load generator does not
    import the server; the message types both take from the catalogue)."""
    codes = {protocol.INVALID_JSON, protocol.UNKNOWN_TYPE, protocol.BINARY_FRAME}
    assert set(soak_clients.BAD_ERROR.values()) == codes
    for kind, code in soak_clients.BAD_ERROR.items():
        assert soak_checks.BAD_REASON[kind] == code
    assert soak_checks.BAD_REASON["oversized"] == protocol.TOO_LARGE
    assert soak_checks.BAD_REASON["invalid_utf8"] == protocol.INVALID_FRAME
    assert {k: str(v) for k, v in soak_clients.BAD_CLOSE.items()} == soak_checks.BAD_CLOSE_CODE
    assert set(soak_checks.BAD_REASON) == set(soak_clients.BAD_KINDS)


def test_help_names_the_checks_and_the_defaults() -> None:
    result = CliRunner().invoke(soak.main, ["--help"])
    assert result.exit_code == 0
    text: Any = " ".join(result.output.split())
    for phrase in (
        "--minutes FLOAT RANGE",
        "[default: 10.0; x>0]",
        "--connections",
        "[default: 1000; x>=1]",
        "reports/soak-<date>.md",
        "--churn-per-second",
        "--bad-per-second",
        "--warmup-fraction",
        "--sample-seconds",
        "--out",
        "RSS growth after warm-up",
        "descriptors back to idle",
        "counters balance",
        "< 5 %",
    ):
        assert phrase in text, phrase
