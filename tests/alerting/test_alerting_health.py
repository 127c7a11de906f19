"""/api/health judges thresholds.yaml: the same entries, computed from the pool's snapshot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from wsmon.catalogue import LATENCY_BUCKETS
from wsmon.cli import main
from wsmon.exporter import health
from wsmon.exporter.config import load_settings
from wsmon.exporter.metrics import Registry, Snapshot, WorkerMetrics, merge
from wsmon.thresholds import DEFAULT_THRESHOLDS, parse

DEFAULTS = health.load_thresholds("")  # the packaged alerting/thresholds.yaml


def pool(*active: int, capacity: int = 100) -> list[WorkerMetrics]:
    workers = [WorkerMetrics(index, capacity) for index in range(len(active))]
    for worker, count in zip(workers, active, strict=True):
        worker.active.value = count
    return workers


def snapshot(*workers: WorkerMetrics) -> Snapshot:
    return merge(worker.registry.snapshot() for worker in workers)


def check(document: dict[str, Any], name: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [c for c in document["checks"] if c["name"] == name]
    assert len(found) == 1, document
    return found[0]


def test_a_custom_file_changes_the_verdict() -> None:
    entries = [
        {
            "name": "HalfFull",
            "metric": "pool_utilization",
            "condition": ">=",
            "value": 0.5,
            "for": "1m",
            "severity": "critical",
            "enabled": True,
        }
    ]
    current = snapshot(*pool(60, 60))
    default = health.evaluate(current, {}, 2, 2, DEFAULTS)
    assert check(default, "pool_utilization")["status"] == "healthy"  # 60 % is not > 80 %
    strict = health.evaluate(current, {}, 2, 2, parse(entries, "t.yaml"))
    assert strict["status"] == "unhealthy"
    assert [c["name"] for c in strict["checks"]] == ["workers", "pool_utilization"]
    assert check(strict, "pool_utilization") == {
        "name": "pool_utilization",
        "status": "unhealthy",
        "value": 0.6,
        "detail": "60%: open connections / connection capacity of all workers",
        "thresholds": [
            {
                "alert": "HalfFull",
                "severity": "critical",
                "condition": ">=",
                "value": 0.5,
                "crossed": True,
            }
        ],
    }


def test_thresholds_file_setting_is_what_health_judges(tmp_path: Path) -> None:
    entries = yaml.safe_load(DEFAULT_THRESHOLDS.read_text())
    for entry in entries:
        if entry["metric"] == "pool_utilization" and entry["severity"] == "warning":
            entry["value"] = 0.25
    path = tmp_path / "thresholds.yaml"
    path.write_text(yaml.safe_dump(entries))
    settings = load_settings({"thresholds_file": str(path)}, {}, None)
    current = snapshot(*pool(30, 30))
    assert health.evaluate(current, {}, 2, 2, DEFAULTS)["status"] == "healthy"
    judged = health.evaluate(current, {}, 2, 2, health.load_thresholds(settings.thresholds_file))
    assert judged["status"] == "degraded"


def test_a_bad_thresholds_file_stops_the_server_with_entry_and_field(tmp_path: Path) -> None:
    path = tmp_path / "thresholds.yaml"
    path.write_text("- name: X\n  metric: nope\n")
    result = CliRunner().invoke(
        main, ["serve", "--port", "0"], env={"WSMON_THRESHOLDS_FILE": str(path)}
    )
    assert result.exit_code == 2
    assert f"{path}: entry 1 ('X'): metric: unknown metric 'nope'" in result.output


def test_probe_and_instance_down_are_left_to_prometheus() -> None:
    names = {c["name"] for c in health.evaluate(snapshot(*pool(0)), {}, 1, 1, DEFAULTS)["checks"]}
    assert "probe_failure" not in names
    assert "instance_down" not in names
    assert set(health.LOCAL_INDICATORS) <= names | {"message_success_rate"}


def test_error_and_success_rates_over_the_window() -> None:
    """They judge the server's own failures; the clients' errors are a figure of their own."""
    (worker,) = pool(1)
    worker.received["echo"].value = 985
    worker.received["invalid"].value = 15
    worker.failures["echo"].value = 15
    for _ in range(15):
        worker.client_error("invalid", "invalid_json")
    document = health.evaluate(snapshot(worker), {}, 1, 1, DEFAULTS)
    assert check(document, "client_error_ratio")["value"] == pytest.approx(0.015)
    assert check(document, "client_error_ratio")["status"] == "healthy"  # not > 5 %
    assert check(document, "message_error_rate")["value"] == pytest.approx(0.015)
    assert check(document, "message_error_rate")["status"] == "degraded"  # > 1 %
    assert check(document, "message_success_rate")["value"] == pytest.approx(0.985)
    assert check(document, "message_success_rate")["status"] == "healthy"  # not < 98 %
    assert document["status"] == "degraded"


def test_rejections_leave_out_a_drain() -> None:
    (worker,) = pool(1)
    worker.opened.value = 90
    worker.rejected["capacity"].value = 10
    worker.rejected["draining"].value = 1000
    document = health.evaluate(snapshot(worker), {}, 1, 1, DEFAULTS)
    assert check(document, "connection_rejection_rate")["value"] == pytest.approx(0.1)
    assert check(document, "connection_rejection_rate")["status"] == "unhealthy"  # > 5 %


def test_imbalance_is_judged_only_under_load() -> None:
    light = health.evaluate(snapshot(*pool(9, 1)), {}, 2, 2, DEFAULTS)
    assert check(light, "worker_imbalance")["value"] is None  # 10 connections, 2 workers
    heavy = health.evaluate(snapshot(*pool(40, 20)), {}, 2, 2, DEFAULTS)
    assert check(heavy, "worker_imbalance")["value"] == 2.0
    assert check(heavy, "worker_imbalance")["status"] == "degraded"  # > 1.5
    empty_worker = health.evaluate(snapshot(*pool(30, 0)), {}, 2, 2, DEFAULTS)
    assert check(empty_worker, "worker_imbalance")["value"] == 30.0


def test_quantile_follows_histogram_quantile() -> None:
    bounds = LATENCY_BUCKETS
    index = bounds.index(0.2)
    counts = [0] * (len(bounds) + 1)
    counts[index] = 600
    assert health.quantile(0.99, bounds, counts) == pytest.approx(0.199)  # as recording_test
    counts[0] = 98
    counts[index] = 2
    assert health.quantile(0.99, bounds, counts) == pytest.approx(0.15)
    assert health.quantile(0.99, bounds, [0] * len(bounds) + [5]) == bounds[-1]
    assert health.quantile(0.99, bounds, [0] * (len(bounds) + 1)) is None


def test_p99_and_broadcast_time_from_the_snapshots() -> None:
    (worker,) = pool(1)
    baseline = snapshot(worker)
    for _ in range(100):
        worker.latency["echo"].observe(0.6)
        worker.fanout_duration["chat"].observe(0.15)
    document = health.evaluate(snapshot(worker), baseline, 1, 1, DEFAULTS)
    assert check(document, "p99_latency")["value"] == pytest.approx(0.5 + 0.5 * 0.99)
    assert check(document, "p99_latency")["status"] == "degraded"  # > 500 ms
    assert check(document, "broadcast_time")["value"] == pytest.approx(0.1 + 0.1 * 0.99)
    assert check(document, "average_latency")["status"] == "unhealthy"  # 600 ms > 200 ms
    later = snapshot(worker)
    assert check(health.evaluate(later, later, 1, 1, DEFAULTS), "p99_latency")["value"] is None


def test_an_empty_registry_is_healthy() -> None:
    assert health.evaluate(Registry().snapshot(), {}, 1, 1, DEFAULTS)["status"] == "healthy"
