"""WsmonBrokerDown on a real broker: `wsmon serve --broker` on a real redis-server, Prometheus
scraping it with the generated rules (the alert's `for` 0s, so the test need not wait 2 minutes),
an instance without a broker beside it. Stopping Redis fires the page for the broker's instance
only, and wsmon:health:status reads unhealthy; Redis back on the same port resolves it and the
reconnect is counted."""

from __future__ import annotations

import json
import secrets
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from support.polling import wait_until
from support.processes import HOST
from support.redis import RedisServer
from support.stack import SCRAPE_INTERVAL, SmtpSink, Stack, write_alerting

from wsmon.alerting import build

pytestmark = pytest.mark.integration

ALERT = "WsmonBrokerDown"
BROKER_ALERTS = 'ALERTS{indicator=~"broker_.*"}'
WAIT = 30.0  # scrape + evaluation + the reconnect backoff (5 s at most), on a shared machine


def query(url: str, expression: str) -> list[dict[str, Any]]:
    encoded = urllib.parse.urlencode({"query": expression})
    with urllib.request.urlopen(f"{url}/api/v1/query?{encoded}", timeout=5) as response:
        result: list[dict[str, Any]] = json.load(response)["data"]["result"]
    return result


def values(url: str, expression: str) -> dict[str, str]:
    """instance -> value of each series `expression` returns."""
    return {r["metric"].get("instance", ""): r["value"][1] for r in query(url, expression)}


@pytest.mark.timeout(120)
def test_a_stopped_redis_fires_the_broker_alert_for_its_instance_only(
    stack: Stack, tmp_path: Path
) -> None:
    redis = RedisServer()
    redis.start()
    try:
        sink = SmtpSink()  # the Alertmanager config wants a relay; no Alertmanager runs here
        _, generated = write_alerting(tmp_path, sink, {}, immediate={ALERT})
        channel = f"wsmon-test-{secrets.token_hex(4)}"
        _, port = stack.wsmon("--workers", "1", "--broker", redis.url, "--broker-channel", channel)
        _, plain_port = stack.wsmon("--workers", "1")
        brokered, plain = f"{HOST}:{port}", f"{HOST}:{plain_port}"
        config = {
            "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": SCRAPE_INTERVAL},
            "rule_files": [str(generated / build.RULES)],
            "scrape_configs": [
                {"job_name": "wsmon", "static_configs": [{"targets": [brokered, plain]}]}
            ],
        }
        (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
        _, prom = stack.prometheus(tmp_path / "prometheus.yml", tmp_path / "tsdb")

        # Up: recorded 0 for the broker's instance, nothing at all for the one without.
        wait_until(
            lambda: values(prom, "wsmon:broker_down:bool"),
            lambda v: v == {brokered: "0"},
            within=WAIT,
            what="wsmon:broker_down:bool 0 for the brokered instance only",
            interval=0.5,
        )
        wait_until(
            lambda: values(prom, 'up{job="wsmon"}'),
            lambda v: v == {brokered: "1", plain: "1"},
            within=WAIT,
            what="both instances scraped",
            interval=0.5,
        )
        assert query(prom, BROKER_ALERTS) == []

        redis.stop()
        firing = wait_until(
            lambda: query(prom, f'ALERTS{{alertname="{ALERT}", alertstate="firing"}}'),
            bool,
            within=WAIT,
            what=f"{ALERT} firing",
            interval=0.5,
        )
        (alert,) = firing
        assert alert["metric"]["instance"] == brokered
        assert alert["metric"]["severity"] == "critical"
        wait_until(
            lambda: values(prom, "wsmon:health:status"),
            lambda v: v == {"": "2"},
            within=WAIT,
            what="wsmon:health:status unhealthy",
            interval=0.5,
        )

        redis.start()  # the same port: the instance finds it again by itself
        wait_until(
            lambda: query(prom, f'ALERTS{{alertname="{ALERT}"}}'),
            lambda found: found == [],
            within=WAIT,
            what=f"{ALERT} resolved once Redis is back",
            interval=0.5,
        )
        reconnects = values(prom, "wsmon_broker_reconnects_total")
        assert reconnects == {brokered: "1"}, reconnects
    finally:
        redis.stop()
