"""Prometheus started as the bundle's systemd unit starts it keeps 30 days and no more.

35 days of every wsmon series (the dashboards' backfill generator, all of the catalogue) become
TSDB blocks with `promtool tsdb create-blocks-from openmetrics`; Prometheus starts on them with
the unit's flags, only the paths and the listen address replaced by the test's. It must serve
29 days back, delete every block that ends more than 30 days before the newest, and answer
nothing 34 days back. The disk the kept days take is printed, for the README's figure.
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from backfill import DAY, JOB, create_blocks, write
from bundle import DEPLOY, exec_start
from support.stack import Stack

from wsmon.catalogue import SPECS
from wsmon.exporter.exposition import BUILD_INFO

pytestmark = pytest.mark.integration

SPAN = 35 * DAY
RETENTION_DAYS = 30
# Every 5 min: 35 days of all 174 series was 1.75M samples (200 MB of text), imported in ~20 s on
# two cores; at the bundle's 15 s it would be 20 times that.
SAMPLE_INTERVAL = 300
# Prometheus deletes whole blocks only. 54 h blocks (the TSDB range under 3 days) make the block
# holding day 34 end before day 30 (34 d - 2.25 d), so it must go, while the ones holding day 29
# end after it and stay; the default 486 h blocks could straddle the boundary either way.
BLOCK_DURATION = "54h"
# Flags the test sets itself (Stack.prometheus): every other flag of the unit is passed as it is.
REPLACED = ("--config.file", "--storage.tsdb.path", "--web.listen-address")


def unit_flags() -> list[str]:
    argv = exec_start(DEPLOY / "systemd" / "wsmon-prometheus.service")
    flags = argv[1:]
    assert sorted(f.split("=", 1)[0] for f in flags if f.startswith(REPLACED)) == sorted(REPLACED)
    kept = [f for f in flags if not f.startswith(REPLACED)]
    assert f"--storage.tsdb.retention.time={RETENTION_DAYS}d" in kept
    return kept


def blocks(data: Path) -> list[dict[str, Any]]:
    """The meta.json of every block in `data`, oldest first."""
    metas = [json.loads(p.read_text()) for p in data.glob("*/meta.json")]
    return sorted(metas, key=lambda meta: meta["minTime"])


def size(directory: Path) -> int:
    """Bytes of every file under `directory` (what `du --apparent-size -b` counts)."""
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


def count_at(url: str, at: float) -> int | None:
    """count({job="wsmon"}) at `at`, None when Prometheus has no sample there."""
    query = urllib.parse.urlencode({"query": f'count({{job="{JOB}"}})', "time": f"{at:.3f}"})
    with urllib.request.urlopen(f"{url}/api/v1/query?{query}", timeout=10) as response:
        body = json.load(response)
    assert body["status"] == "success", body
    result = body["data"]["result"]
    return int(result[0]["value"][1]) if result else None


@pytest.mark.timeout(240)
def test_prometheus_keeps_30_days_and_deletes_older_blocks(stack: Stack, tmp_path: Path) -> None:
    flags = unit_flags()
    end = time.time()
    data = tmp_path / "data"
    specs = sorted([*SPECS.values(), BUILD_INFO], key=lambda spec: spec.name)
    source = tmp_path / "wsmon.om"
    with source.open("w") as out:
        written = write(out, specs, {}, end, SPAN, SAMPLE_INTERVAL)
    create_blocks(source, data, BLOCK_DURATION)
    before = blocks(data)
    newest = max(meta["maxTime"] for meta in before)
    cutoff = newest - RETENTION_DAYS * DAY * 1000
    doomed = {meta["ulid"] for meta in before if meta["maxTime"] < cutoff}
    assert doomed, "the backfill made no block older than 30 days: nothing to delete"
    assert before[0]["minTime"] <= (end - 34 * DAY) * 1000

    # Installed as the unit expects: prometheus.yml with its rules beside it.
    installed = tmp_path / "etc"
    installed.mkdir()
    for name in ("prometheus.yml", "rules.yaml"):
        shutil.copy(DEPLOY / "prometheus" / name, installed / name)
    _, url = stack.prometheus(installed / "prometheus.yml", data, *flags)

    with urllib.request.urlopen(f"{url}/api/v1/status/flags", timeout=10) as response:
        served = json.load(response)["data"]
    assert served["storage.tsdb.retention.time"] == f"{RETENTION_DAYS}d"
    # Retention is applied when the TSDB opens its blocks, and again after each compaction.
    deadline = time.monotonic() + 30
    while doomed & {meta["ulid"] for meta in blocks(data)}:
        assert time.monotonic() < deadline, "blocks older than 30 days were not deleted"
        time.sleep(0.2)
    after = blocks(data)
    assert all(meta["maxTime"] >= cutoff for meta in after)
    assert after[0]["minTime"] <= (end - 29 * DAY) * 1000
    assert count_at(url, end - 29 * DAY) == written.series, "29 days back is not all there"
    assert count_at(url, end - 34 * DAY) is None, "34 days back is still served"

    kept_ms = max(meta["maxTime"] for meta in after) - after[0]["minTime"]
    disk = size(data)
    per_30_days = disk * RETENTION_DAYS * DAY * 1000 / kept_ms
    samples = written.series * RETENTION_DAYS * DAY // SAMPLE_INTERVAL
    print(
        f"retention: {written.series} series every {SAMPLE_INTERVAL}s; {len(after)} of"
        f" {len(before)} blocks kept, {kept_ms / 1000 / DAY:.1f} days, {disk / 1e6:.1f} MB on"
        f" disk; 30 days: {per_30_days / 1e6:.1f} MB, {per_30_days / samples:.2f} bytes/sample"
    )
