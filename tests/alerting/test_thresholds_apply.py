"""`wsmon thresholds ... --apply` against a real `wsmon serve` and Prometheus, neither restarted.

The server reads a copy of thresholds.yaml (its --thresholds-file) and Prometheus the rules built
from it. An edit with --apply rebuilds the rules where Prometheus loads them, sends the server a
SIGHUP and reloads Prometheus: the new alert is in Prometheus' /api/v1/rules and in the server's
/api/health, and both still run with the pids they started with. Prometheus is reloaded once
through /-/reload (it runs with --web.enable-lifecycle) and once by SIGHUP (as the deploy
bundle's unit reloads it); a file that does not load keeps the server on the set it had.
"""

from __future__ import annotations

import json
import re
import signal
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from support.processes import HOST
from support.stack import Stack, prometheus_config

from wsmon.cli import main
from wsmon.thresholds import DEFAULT_THRESHOLDS, load

pytestmark = pytest.mark.integration

NEW = "WsmonLatencyWatch"


def wsmon(*argv: str) -> Result:
    return CliRunner().invoke(main, list(argv))


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def rule_alerts(prometheus: str) -> dict[str, str]:
    """Alert name -> its expression, as Prometheus has loaded them."""
    groups = get(f"{prometheus}/api/v1/rules?type=alert")["data"]["groups"]
    return {rule["name"]: rule["query"] for group in groups for rule in group["rules"]}


def judged(server: str) -> dict[str, float]:
    """Alert name -> threshold value, for every threshold /api/health judges by."""
    checks = get(f"{server}/api/health")["checks"]
    return {t["alert"]: t["value"] for check in checks for t in check.get("thresholds", [])}


def setup(stack: Stack, tmp_path: Path, *prometheus_flags: str) -> tuple[Any, str, Any, str, Path]:
    thresholds = tmp_path / "thresholds.yaml"
    thresholds.write_text(DEFAULT_THRESHOLDS.read_text())
    rules = tmp_path / "rules"
    built = wsmon("rules", "build", "--thresholds", str(thresholds), "--output", str(rules))
    assert built.exit_code == 0, built.output
    server, port = stack.wsmon("--workers", "1", "--thresholds-file", str(thresholds))
    config = prometheus_config(
        tmp_path / "prometheus.yml", {"wsmon": f"{HOST}:{port}"}, rules=rules / "rules.yaml"
    )
    prometheus, url = stack.prometheus(config, tmp_path / "data", *prometheus_flags)
    assert NEW not in rule_alerts(url)
    assert NEW not in judged(server.base_url)
    return server, server.base_url, prometheus, url, thresholds


def test_add_apply_makes_the_rule_live_in_prometheus_and_health(
    stack: Stack, tmp_path: Path
) -> None:
    server, server_url, prometheus, url, thresholds = setup(
        stack, tmp_path, "--web.enable-lifecycle"
    )
    pids = (server.pid, prometheus.pid)
    result = wsmon(
        *("thresholds", "add", NEW, "--metric", "average_latency", "--condition", ">"),
        *("--value", "0.05", "--for", "1m", "--severity", "warning"),
        *("--file", str(thresholds), "--rules-output", str(tmp_path / "rules"), "--apply"),
        *("--wsmon-pid", str(server.pid), "--wsmon-url", server_url, "--prometheus-url", url),
    )
    assert result.exit_code == 0, result.output
    assert "wsmon: SIGHUP" in result.stdout
    assert "/api/health judges by the new thresholds" in result.stdout
    assert f"Prometheus: reloaded ({url}/-/reload)" in result.stdout
    # /-/reload answers once the rules are loaded, and the command waited for /api/health.
    assert rule_alerts(url)[NEW] == "wsmon:message_latency_seconds:avg_rate5m > 0.05"
    assert judged(server_url)[NEW] == 0.05
    assert (server.pid, prometheus.pid) == pids
    assert server.alive()
    assert prometheus.alive()

    # A file the loader refuses: the server keeps the set it has and logs why, in one line.
    thresholds.write_text(thresholds.read_text().replace("value: 0.05", "value: -1"))
    reload = wsmon(
        *("thresholds", "set", NEW, "--for", "2m", "--file", str(thresholds)),
        *("--apply", "--wsmon-pid", str(server.pid)),
    )
    assert reload.exit_code == 1  # the CLI refuses the bad file as well, and signals nothing
    assert "value: must be seconds, at least 0" in reload.output
    server.signal(signal.SIGHUP)
    logged = server.wait_for(re.compile(r"SIGHUP: thresholds not reloaded.*"), 10)
    assert logged is not None, server.log
    # Appended after every shipped entry.
    entry = len(load(DEFAULT_THRESHOLDS)) + 1
    assert f"{thresholds}: entry {entry} ('{NEW}'): value:" in logged.group(0)
    assert judged(server_url)[NEW] == 0.05
    assert server.alive()


def test_set_apply_reloads_prometheus_by_sighup(stack: Stack, tmp_path: Path) -> None:
    server, server_url, prometheus, url, thresholds = setup(stack, tmp_path)
    common = ("--file", str(thresholds), "--rules-output", str(tmp_path / "rules"), "--apply")
    # Without --web.enable-lifecycle, /-/reload is refused: said so, and the exit status is 1.
    refused = wsmon(
        *("thresholds", "set", "WsmonPoolUtilizationHigh", "--value", "0.7", *common),
        *("--prometheus-url", url),
    )
    assert refused.exit_code == 1
    assert "runs without --web.enable-lifecycle; give --prometheus-pid" in refused.output
    result = wsmon(
        *("thresholds", "set", "WsmonPoolUtilizationHigh", "--value", "0.75", *common),
        *("--prometheus-pid", str(prometheus.pid), "--prometheus-url", url),
        *("--wsmon-pid", str(server.pid), "--wsmon-url", server_url),
    )
    assert result.exit_code == 0, result.output
    assert f"Prometheus: SIGHUP (pid {prometheus.pid}); the new rules are loaded" in result.stdout
    assert "> 0.75" in rule_alerts(url)["WsmonPoolUtilizationHigh"]
    assert judged(server_url)["WsmonPoolUtilizationHigh"] == 0.75
    assert server.alive()
    assert prometheus.alive()
