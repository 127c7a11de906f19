"""A parsed /metrics scrape, read with the official Prometheus client's text parser."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

LabelSet = frozenset[tuple[str, str]]


@dataclass(frozen=True, repr=False)
class Metrics:
    """One parsed /metrics scrape: sample name + label set -> value."""

    text: str
    samples: dict[tuple[str, LabelSet], float]

    def __repr__(self) -> str:  # keeps assertion messages readable
        return f"<Metrics: {len(self.samples)} samples>"

    @classmethod
    def parse(cls, text: str) -> Metrics:
        samples: dict[tuple[str, LabelSet], float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
        return cls(text, samples)

    def value(self, name: str, **labels: str) -> float:
        """The sample with exactly these labels; 0 when the series does not exist (yet)."""
        return self.samples.get((name, frozenset(labels.items())), 0.0)

    def total(self, name: str, **labels: str) -> float:
        """Sum of every sample of `name` whose labels include `labels` (e.g. over workers)."""
        wanted = set(labels.items())
        return sum(v for (n, ls), v in self.samples.items() if n == name and wanted <= ls)

    def series(self, name: str) -> dict[LabelSet, float]:
        return {ls: v for (n, ls), v in self.samples.items() if n == name}

    def delta(self, before: Metrics, name: str, **labels: str) -> float:
        """How far a summed counter moved since `before`."""
        return self.total(name, **labels) - before.total(name, **labels)
