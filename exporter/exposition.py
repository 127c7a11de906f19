"""A merged snapshot as Prometheus text (0.0.4) or OpenMetrics (1.0.0), for /metrics.

Written here rather than through prometheus_client's collector API, which formatted every label
string on every scrape, on the serving worker's event loop: here the sample prefix of every series
(name and label string) is formatted once and kept, so a scrape is a join of prefix-value lines
(`make bench`, /metrics at 10,000 connections: p50 3.6 ms before, 1.3 ms after). The output
is byte for byte what prometheus_client writes for the same figures (tests/unit/test_exposition.py
holds it to that), and the series are bounded enums, so the cache is bounded too.
"""

from __future__ import annotations

import sys
from operator import attrgetter
from typing import Any, Final

from prometheus_client.utils import floatToGoString

from wsmon import __version__
from wsmon.catalogue import CATALOGUE, COUNTER, HISTOGRAM, Spec

from .metrics import Row, Sample, Snapshot

TEXT: Final = "text/plain; version=0.0.4; charset=utf-8"
# Metric names are plain Prometheus names, so the escaping scheme named here changes nothing.
OPENMETRICS: Final = (
    "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=underscores"
)

BUILD_INFO: Final = Spec(
    "wsmon_build_info",
    "gauge",
    "wsmon version and Python version; always 1.",
    ("version", "python"),
)
_BUILD_INFO_ROWS: Final[list[Row]] = [
    Sample((__version__, ".".join(map(str, sys.version_info[:3]))), 1)
]
_BY_LABELS: Final = attrgetter("labels")


def _go(value: float) -> str:
    text: str = floatToGoString(value)  # type: ignore[no-untyped-call]
    return text


def _label_value(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def _labels(names: tuple[str, ...], values: list[str] | tuple[str, ...]) -> str:
    if not names:
        return ""
    pairs = sorted(zip(names, values, strict=True))
    return "{" + ",".join(f'{name}="{_label_value(value)}"' for name, value in pairs) + "}"


class Exposition:
    """Renders snapshots; one per process, keeping the formatted prefix of every series seen."""

    def __init__(self) -> None:
        self._prefixes: dict[tuple[str, tuple[str, ...]], Any] = {}
        self._edges = {
            spec.name: [_go(bound) for bound in spec.buckets] + ["+Inf"]
            for spec in CATALOGUE
            if spec.kind == HISTOGRAM
        }

    def render(self, snapshot: Snapshot, accept: str | None) -> tuple[bytes, str]:
        """The exposition in the format the scraper asked for (Prometheus asks for OpenMetrics)."""
        openmetrics = "application/openmetrics-text" in (accept or "")
        out: list[str] = []
        for spec in (BUILD_INFO, *CATALOGUE):
            rows = _BUILD_INFO_ROWS if spec is BUILD_INFO else snapshot.get(spec.name)
            if rows:
                self._family(out, spec, sorted(rows, key=_BY_LABELS), openmetrics)
        if openmetrics:
            out.append("# EOF\n")
        return "".join(out).encode(), OPENMETRICS if openmetrics else TEXT

    def _family(self, out: list[str], spec: Spec, rows: list[Row], om: bool) -> None:
        name = spec.name
        if spec.kind == COUNTER and om:
            name = name.removesuffix("_total")  # OpenMetrics names the family without it
        help_text = spec.help.replace("\\", r"\\").replace("\n", r"\n")
        if om:
            help_text = help_text.replace('"', r"\"")
        out.append(f"# HELP {name} {help_text}\n# TYPE {name} {spec.kind}\n")
        for row in rows:
            prefix = self._prefix(spec, row.labels)
            if isinstance(row, Sample):
                out.append(f"{prefix} {_go(row.value)}\n")
                continue
            buckets, count_prefix, sum_prefix = prefix
            cumulative = 0
            for bucket, count in zip(buckets, row.counts, strict=True):
                cumulative += count
                out.append(f"{bucket} {_go(cumulative)}\n")
            out.append(f"{count_prefix} {_go(cumulative)}\n{sum_prefix} {_go(row.sum)}\n")

    def _prefix(self, spec: Spec, labels: tuple[str, ...]) -> Any:
        key = (spec.name, labels)
        found = self._prefixes.get(key)
        if found is None:
            if spec.kind == HISTOGRAM:
                names = (*spec.labels, "le")
                found = (
                    [
                        f"{spec.name}_bucket{_labels(names, (*labels, edge))}"
                        for edge in self._edges[spec.name]
                    ],
                    f"{spec.name}_count{_labels(spec.labels, labels)}",
                    f"{spec.name}_sum{_labels(spec.labels, labels)}",
                )
            else:
                found = f"{spec.name}{_labels(spec.labels, labels)}"
            self._prefixes[key] = found
        return found
