"""Fixtures for the alerting tests: Debian's prometheus and alertmanager, `wsmon serve`, promtool.

`stack` starts real processes on 127.0.0.1 ephemeral ports and stops each by its pid at the end;
a failing test gets every process's log attached. Both come from support.stack, which
tests/dashboards shares; tests reach the helpers through the fixture and that module.
"""

from __future__ import annotations

from support.stack import pytest_runtest_makereport, stack

__all__ = ["pytest_runtest_makereport", "stack"]
