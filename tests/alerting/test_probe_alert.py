"""WsmonProbeFailing on real probes: Prometheus scrapes wsmon's /probe with the deploy bundle's own
probe job, the mixin's probe_failure rule judges the answers, and a stopped worker makes the
alert fire while the idle server before it fires nothing."""

from __future__ import annotations

import copy
import json
import os
import signal
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.polling import wait_until
from support.processes import HOST
from support.stack import SCRAPE_INTERVAL, SmtpSink, Stack, write_alerting

from wsmon.alerting import build
from wsmon.catalogue import PROBE_MODULES

pytestmark = pytest.mark.integration

DEPLOY_PROMETHEUS = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "prometheus.yml"
ALERT = "WsmonProbeFailing"


def query(url: str, expression: str) -> list[dict[str, Any]]:
    encoded = urllib.parse.urlencode({"query": expression})
    with urllib.request.urlopen(f"{url}/api/v1/query?{encoded}", timeout=5) as response:
        result: list[dict[str, Any]] = json.load(response)["data"]["result"]
    return result


def bundle_probe_job(target: str) -> dict[str, Any]:
    """The bundle's probe job as it is, pointed at `target` and scraped every second."""
    config = yaml.safe_load(DEPLOY_PROMETHEUS.read_text())
    (job,) = [j for j in config["scrape_configs"] if j.get("metrics_path") == "/probe"]
    job = copy.deepcopy(job)
    for group in job["static_configs"]:
        group["targets"] = [target]
    job["scrape_interval"] = SCRAPE_INTERVAL
    job["scrape_timeout"] = SCRAPE_INTERVAL
    return job


@pytest.mark.timeout(120)
def test_a_stopped_worker_fires_the_probe_alert_on_real_probes(
    stack: Stack, tmp_path: Path
) -> None:
    sink = SmtpSink()  # the Alertmanager config wants a relay; no Alertmanager runs here
    _, generated = write_alerting(tmp_path, sink, {}, immediate={ALERT})
    wsmon, port = stack.wsmon("--workers", "2")
    target = f"{HOST}:{port}"
    config = {
        "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
        "rule_files": [str(generated / build.RULES)],
        "scrape_configs": [
            {"job_name": "wsmon", "static_configs": [{"targets": [target]}]},
            bundle_probe_job(target),
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    # The password the bundle's job sends, beside the config as in the bundle (the test's
    # server asks for none).
    (tmp_path / config["scrape_configs"][1]["basic_auth"]["password_file"]).write_text("x\n")
    _, prom = stack.prometheus(tmp_path / "prometheus.yml", tmp_path / "tsdb")

    def successes() -> dict[str, str]:
        found = query(prom, f'wsmon_probe_success{{job="wsmon",instance="{target}"}}')
        return {r["metric"]["probe"]: r["value"][1] for r in found}

    everyone = dict.fromkeys(PROBE_MODULES, "1")
    wait_until(
        successes, lambda s: s == everyone, within=20, what="every probe passes", interval=0.5
    )
    assert query(prom, f'ALERTS{{alertname="{ALERT}"}}') == []

    worker = wsmon.worker_pids()[1]
    os.kill(worker, signal.SIGSTOP)
    try:
        # The pool probe fails on every run now (worker 1 takes no connection), which pushes
        # the share of failed runs over the warning's 20 %.
        wait_until(
            successes,
            lambda s: s.get("pool") == "0",
            within=20,
            what="the pool probe fails",
            interval=0.5,
        )
        firing = wait_until(
            lambda: query(prom, f'ALERTS{{alertname="{ALERT}",alertstate="firing"}}'),
            bool,
            within=45,
            what=f"{ALERT} firing",
            interval=0.5,
        )
    finally:
        os.kill(worker, signal.SIGCONT)
    (alert,) = firing
    assert alert["metric"]["instance"] == target
    assert alert["metric"]["severity"] == "warning"
