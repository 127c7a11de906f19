"""The tests see wsmon as installed: never the checkout's folders as packages of their own."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_the_checkout_is_not_on_the_import_path() -> None:
    on_path = {Path(entry or ".").resolve() for entry in sys.path}
    assert REPO not in on_path
    for folder in ("exporter", "alerting", "loadgen", "dashboards"):
        spec = importlib.util.find_spec(folder)  # tests/alerting is a namespace, not the part
        places = [] if spec is None else list(spec.submodule_search_locations or [spec.origin])
        assert str(REPO / folder) not in places, f"{folder}/ importable as a package of its own"


def test_the_parts_are_subpackages_of_wsmon() -> None:
    import wsmon
    import wsmon.alerting
    import wsmon.dashboards
    import wsmon.exporter
    import wsmon.loadgen

    for part in (wsmon.exporter, wsmon.alerting, wsmon.loadgen, wsmon.dashboards):
        assert part.__name__.startswith("wsmon.")
        assert Path(part.__file__ or "").parent.parent == Path(wsmon.__file__ or "").parent
