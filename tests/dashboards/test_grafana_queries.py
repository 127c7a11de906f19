"""The Grafana emulation the live and historical tests rely on: steps, intervals, variables.

Expected values are Grafana's own (a 30-day panel steps by 30m, `$__rate_interval` is 4s on 1s
scrapes, multi-select values are regex-escaped inside the PromQL string), so a mistake here
cannot make a dashboard query pass that Grafana would run differently.
"""

from __future__ import annotations

from typing import Any

import pytest
from grafana_queries import Choice, Target, Window, interpolate

DAY = 86_400
VARIABLES: list[dict[str, Any]] = [
    {"type": "datasource", "name": "datasource", "query": "prometheus"},
    {"type": "query", "name": "job", "multi": False, "includeAll": False},
    {"type": "query", "name": "instance", "multi": True, "includeAll": True, "allValue": ".*"},
]
CHOICES = {"job": Choice(("wsmon",)), "instance": Choice(("10.0.0.1:8080",))}


def target(expr: str, min_interval: str = "") -> Target:
    return Target("d", 1, "p", "A", expr, instant=False, min_interval=min_interval)


def substituted(expr: str, window: Window, **choices: Choice) -> str:
    t = target(expr)
    return interpolate(expr, VARIABLES, {**CHOICES, **choices}, window.builtins(t))


LIVE = Window(1000.0, 1060.0, scrape_interval=1.0)
MONTH = Window(0.0, 30.0 * DAY, scrape_interval=15.0)


@pytest.mark.parametrize(
    ("window", "min_interval", "step", "rate"),
    [
        (LIVE, "", 1.0, "4s"),  # a minute: the scrape interval bounds the step
        (MONTH, "", 1800.0, "30m15s"),  # 2592 s per point, rounded to 30m
        (MONTH, "1d", DAY, "24h0m15s"),  # a per-day panel
        (Window(0.0, 6 * 3600.0, 15.0), "", 20.0, "1m0s"),  # now-6h: 20s, rate 4 x 15s
    ],
)
def test_step_and_rate_interval_as_grafana_computes_them(
    window: Window, min_interval: str, step: float, rate: str
) -> None:
    t = target("x", min_interval)
    assert window.step(t) == step
    assert window.builtins(t)["__rate_interval"] == rate


def test_variables_substituted_as_the_prometheus_data_source_does() -> None:
    expr = 'sum(rate(x{job="$job", instance=~"${instance}"}[$__rate_interval]))[$__range:]'
    assert substituted(expr, LIVE) == (
        r'sum(rate(x{job="wsmon", instance=~"10\\.0\\.0\\.1:8080"}[4s]))[60s:]'
    )
    two = Choice(("10.0.0.1:8080", "10.0.0.2:8080"))
    assert r'instance=~"(10\\.0\\.0\\.1:8080|10\\.0\\.0\\.2:8080)"' in substituted(
        expr, LIVE, instance=two
    )
    every = Choice(("10.0.0.1:8080", "10.0.0.2:8080"), all=True)
    assert 'instance=~".*"' in substituted(expr, LIVE, instance=every)
    assert substituted('label_replace(x, "a", "$1", "b", "(.*)")', LIVE).count("$1") == 1


@pytest.mark.parametrize(
    ("expr", "problem"),
    [
        ('x{instance=~"$instances"}', "neither a dashboard variable"),
        ('x{datasource="$datasource"}', "datasource variable"),
    ],
)
def test_a_variable_grafana_could_not_fill_in_is_an_error(expr: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        substituted(expr, LIVE)
