"""wsmon: a WebSocket server built to be watched.

This package is the small core every part of wsmon uses: the root command (`wsmon.cli`), the
threshold model (`thresholds`), the figures a threshold can watch (`indicators`), the metric
catalogue (`catalogue`), the YAML reader and the event-loop runner. The server (`wsmon.exporter`),
the alerting mixin (`wsmon.alerting`) and the load generator (`wsmon.loadgen`) build on it and
never on each other; `make lint` holds the graph to that with import-linter.
"""

from importlib.metadata import version

# Written once, in pyproject.toml.
__version__ = version("wsmon")
