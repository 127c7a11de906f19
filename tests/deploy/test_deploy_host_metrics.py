"""The one-host bundle as an operator installs it, tokens on: wsmon started with its wsmon.yaml
serves /metrics and the probes on metrics_listen only, behind web.yml's basic auth; the bundle's
Prometheus, with its prometheus.yml as rendered (Prometheus' own `basic_auth`, nothing else),
scrapes both wsmon jobs once the two placeholders are replaced, and is refused until then."""

from __future__ import annotations

import json
import re
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import bcrypt
import pytest
from support.polling import wait_until
from support.processes import Wsmon
from support.stack import Stack

from wsmon.deploy import build
from wsmon.loadgen.bench.procs import free_port
from wsmon.thresholds import DEFAULT_THRESHOLDS, load

pytestmark = pytest.mark.integration

PASSWORD = "the-scrape-password-0123"
JWT_SECRET = "an-hs256-secret-of-at-least-32-bytes-for-this-test"


def installed(root: Path) -> tuple[Path, Path, dict[str, int]]:
    """The bundle rendered for 127.0.0.1, free ports and `root`, its wsmon/ and prometheus/
    written there: (wsmon.yaml, prometheus.yml, ports)."""
    ports = {part: free_port() for part in ("wsmon", "wsmonMetrics", "prometheus", "alertmanager")}
    etc = root / "etc"
    overrides: dict[str, Any] = {
        "deploy": {
            "host": "127.0.0.1",
            "ports": ports,
            "scrapeInterval": "1s",
            "paths": {
                "wsmonConfig": str(etc / "wsmon" / "wsmon.yaml"),
                "wsmonThresholds": str(etc / "wsmon" / "thresholds.yaml"),
                "wsmonJwtSecret": str(etc / "wsmon" / "jwt.secret"),
                "wsmonWebConfig": str(etc / "wsmon" / "web.yml"),
                "prometheusConfig": str(etc / "prometheus"),
            },
        }
    }
    files = build.render(load(DEFAULT_THRESHOLDS), overrides)
    build.write(
        {path: text for path, text in files.items() if path.startswith(("wsmon/", "prometheus/"))},
        etc,
    )
    (etc / "wsmon" / "jwt.secret").write_text(JWT_SECRET)
    return etc / "wsmon" / "wsmon.yaml", etc / "prometheus" / "prometheus.yml", ports


def query(url: str, expression: str) -> dict[str, str]:
    """Each series' `job` -> its value."""
    params = urllib.parse.urlencode({"query": expression})
    with urllib.request.urlopen(f"{url}/api/v1/query?{params}", timeout=5) as response:
        result = json.load(response)["data"]["result"]
    return {series["metric"]["job"]: series["value"][1] for series in result}


def test_the_installed_bundle_is_scraped_with_basic_auth_once_its_placeholders_are_replaced(
    tmp_path: Path, stack: Stack
) -> None:
    settings, prometheus_yml, ports = installed(tmp_path)
    web = settings.with_name("web.yml")
    password = prometheus_yml.with_name("wsmon.password")
    # The server's token settings come from the file, so the helper adds no --no-auth.
    server = Wsmon(
        "--config",
        str(settings),
        environment={"WSMON_AUTH_JWT_SECRET_FILE": str(settings.with_name("jwt.secret"))},
    )
    stack.services.append(server)
    metrics = f"http://127.0.0.1:{ports['wsmonMetrics']}"
    with urllib.request.urlopen(f"{server.base_url}/api/health", timeout=5) as response:
        assert response.status == 200  # the public port serves the rest
    _, url = stack.prometheus(prometheus_yml, tmp_path / "data")
    # As shipped: refused (the hash is no password's), so both jobs are down.
    up = 'up{job=~"wsmon|wsmon-probe"}'
    wait_until(
        lambda: query(url, up),
        lambda jobs: jobs == {"wsmon": "0", "wsmon-probe": "0"},
        within=30,
        what="both wsmon jobs down while the placeholders are in",
    )
    # The operator's two steps: the hash into web.yml (wsmon reads it at start), the password
    # beside prometheus.yml (read at every scrape).
    hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(4)).decode()
    web.write_text(re.sub(r"(prometheus: )\S+", lambda m: m.group(1) + hashed, web.read_text()))
    password.write_text(PASSWORD + "\n")
    server.stop()
    stack.services.remove(server)
    server = Wsmon(
        "--config",
        str(settings),
        environment={"WSMON_AUTH_JWT_SECRET_FILE": str(settings.with_name("jwt.secret"))},
    )
    stack.services.append(server)
    wait_until(
        lambda: query(url, up),
        lambda jobs: jobs == {"wsmon": "1", "wsmon-probe": "1"},
        within=30,
        what="both wsmon jobs up with the password",
    )
    # The probes ran against the public port and passed; the series carry wsmon's job.
    successes = wait_until(
        lambda: query(url, "min(wsmon_probe_success) by (job)"),
        lambda jobs: jobs.get("wsmon") == "1",
        within=30,
        what="the probes passing",
    )
    assert successes == {"wsmon": "1"}
    # And /metrics is not on the public port.
    status = _status(f"{server.base_url}/metrics")
    assert status == 404
    assert _status(f"{metrics}/metrics") == 401


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
