"""Prometheus's template functions as the generated promtool tests predict them.

The expected strings are Prometheus's own (template/template_test.go), so the predictions match
what promtool renders, not just what this module thinks.
"""

from __future__ import annotations

import pytest

from wsmon.alerting import gotemplate


def test_humanize_duration_matches_prometheus() -> None:
    whole = [0, 1, 60, 3600, 86400, 86400 + 3600, -(86400 * 2 + 3600 * 3 + 60 * 4 + 5), 899.99]
    assert [gotemplate.humanize_duration(v) for v in whole] == [
        "0s",
        "1s",
        "1m 0s",
        "1h 0m 0s",
        "1d 0h 0m 0s",
        "1d 1h 0m 0s",
        "-2d 3h 4m 5s",
        "14m 59.99s",
    ]
    fractions = [0.1, 0.0001, 0.12345, 60.1, 60.5, 1.2345, 12.345]
    assert [gotemplate.humanize_duration(v) for v in fractions] == [
        "100ms",
        "100us",
        "123.5ms",
        "1m 0.1s",
        "1m 0.5s",
        "1.234s",
        "12.35s",
    ]


def test_humanize_percentage_matches_prometheus() -> None:
    values = [0, 0.1234567, 0.5, 1, 1.5]
    assert [gotemplate.humanize_percentage(v) for v in values] == [
        "0%",
        "12.35%",
        "50%",
        "100%",
        "150%",
    ]


def test_render_fills_labels_and_value() -> None:
    template = (
        "on {{ $labels.instance }}: {{ $value | humanizePercentage }}, {{ $value }}, "
        '{{ $value | printf "%.2f" }}'
    )
    assert gotemplate.render(template, {"instance": "a:1"}, 0.25) == "on a:1: 25%, 0.25, 0.25"
    assert gotemplate.render("{{ $value }}", {}, 1.0) == "1"


def test_render_refuses_what_it_cannot_predict() -> None:
    with pytest.raises(ValueError, match="cannot predict the template action"):
        gotemplate.render("{{ $value | humanize1024 }}", {}, 1.0)
