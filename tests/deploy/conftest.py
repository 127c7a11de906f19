"""Fixtures for the deploy bundle's tests: `stack` (real processes on 127.0.0.1, stopped by pid)
and the dashboards' backfill generator, reused for the retention test rather than copied."""

from __future__ import annotations

import sys
from pathlib import Path

from support.stack import pytest_runtest_makereport, stack

# tests/dashboards has no __init__.py (its modules import each other by bare name, as pytest puts
# that folder on sys.path when it collects it): put it there for `import backfill` here too,
# whichever folders this run collects.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dashboards"))

__all__ = ["pytest_runtest_makereport", "stack"]
