"""The origin allowlist and the supervisor gate's rate limit and log throttle, without a server."""

from __future__ import annotations

import logging

import pytest

from wsmon.exporter import gate, logs, origins
from wsmon.exporter.config import ConfigError, load_settings


@pytest.mark.parametrize(
    ("origin", "host", "allowed"),
    [
        (None, "ws.example.net", True),  # no Origin: not a browser
        ("http://ws.example.net:8080", "ws.example.net:8080", True),  # the server's own page
        ("https://ws.example.net", "ws.example.net", True),  # its page behind a TLS proxy
        ("https://ws.example.net", "ws.example.net:443", True),
        ("http://ws.example.net:9999", "ws.example.net:8080", False),  # another port: another site
        ("https://app.example.com", "ws.example.net", True),  # listed
        ("HTTPS://APP.EXAMPLE.COM:443", "ws.example.net", True),  # case and default port
        ("http://app.example.com", "ws.example.net", False),  # listed for https only
        ("https://a.b.example.org", "ws.example.net", True),  # under the pattern
        ("https://example.org", "ws.example.net", False),  # the pattern's domain itself is not
        ("https://evilexample.org", "ws.example.net", False),
        ("null", "ws.example.net", False),  # sandboxed pages and files send "null"
        ("https://app.example.com/path", "ws.example.net", False),
    ],
)
def test_the_allowlist(origin: str | None, host: str, allowed: bool) -> None:
    policy = origins.Policy.from_setting("https://app.example.com, https://*.example.org")
    assert policy.allows(origin, host) is allowed


def test_a_star_allows_any_origin_and_an_empty_setting_only_the_servers_own() -> None:
    assert origins.Policy.from_setting("*").allows("https://anywhere.test", "ws:8080")
    own = origins.Policy.from_setting("")
    assert own.allows("http://ws:8080", "ws:8080")
    assert not own.allows("https://anywhere.test", "ws:8080")


def test_a_bad_pattern_is_a_config_error_naming_the_setting() -> None:
    with pytest.raises(ConfigError, match="allowed_origins: must be comma-separated origins"):
        load_settings({}, {"WSMON_ALLOWED_ORIGINS": "example.com"}, None)
    loaded = load_settings({}, {"WSMON_ALLOWED_ORIGINS": "https://*.example.com, *"}, None)
    assert loaded.allowed_origins == "https://*.example.com, *"


def test_the_rate_limit_passes_a_burst_then_the_rate() -> None:
    now = [0.0]
    limit = gate.RateLimit(2, clock=lambda: now[0])
    assert [limit.allow("10.0.0.1") for _ in range(21)] == [True] * 20 + [False]
    assert limit.allow("10.0.0.2"), "another address has its own bucket"
    now[0] += 1.0  # two more tokens a second
    assert [limit.allow("10.0.0.1") for _ in range(3)] == [True, True, False]
    assert all(gate.RateLimit(0).allow("10.0.0.1") for _ in range(1000)), "0 turns it off"


def test_the_table_of_addresses_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gate, "MAX_ADDRESSES", 3)
    limit = gate.RateLimit(1)
    for index in range(10):
        limit.allow(f"10.0.0.{index}")
    assert len(limit._buckets) == 3


def test_refusals_are_logged_once_per_interval_with_a_count(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [100.0]
    monkeypatch.setattr(logs.time, "monotonic", lambda: now[0])
    throttled = logs.Throttled(logging.getLogger("wsmon.exporter.gate"))
    with caplog.at_level(logging.WARNING):
        for _ in range(50):
            throttled.warn("rate_limited", "refused")
        now[0] += logs.LOG_INTERVAL
        throttled.warn("rate_limited", "refused")
    assert [r.getMessage() for r in caplog.records] == [
        "refused",
        "refused (and 49 more since the last line)",
    ]
