"""Fixtures for the dashboard tests: real prometheus, alertmanager, `wsmon serve`, promtool.

`stack` (from support.stack, shared with tests/alerting) starts processes on 127.0.0.1 ephemeral
ports and stops each by its pid; a failing test gets every process's log attached. The queries
Grafana would run are built by grafana_queries, next to the tests.
"""

from __future__ import annotations

from support.stack import pytest_runtest_makereport, stack

__all__ = ["pytest_runtest_makereport", "stack"]
