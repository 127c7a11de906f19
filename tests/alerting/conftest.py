"""Fixtures for the alerting tests: Debian's prometheus and alertmanager, `wsmon serve`, promtool.

`stack` starts real processes on 127.0.0.1 ephemeral ports and stops each by its pid at the end;
a failing test gets every process's log attached. Tests reach helpers through the fixtures and the
alerting_stack module (tests/integration and tests/loadgen have conftest modules of this name).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from alerting_stack import Stack


@pytest.fixture
def stack() -> Iterator[Stack]:
    started = Stack()
    yield started
    started.stop_all()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Attach the log of every process a failed test started, so the failure explains itself."""
    report = yield
    started = getattr(item, "funcargs", {}).get("stack")
    if report.failed and isinstance(started, Stack):
        for service in started.services:
            report.sections.append((f"{service.name} log", service.log[-20000:]))
    return report
