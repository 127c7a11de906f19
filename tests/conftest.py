"""What every test may and may not do, whichever folder it is in.

A test that is not marked `integration` starts no process: `pytest -m "not integration"` is the
quick run, and a test that forgot the marker fails here, naming what it tried to start, instead of
slowing that run down or leaving a child behind. The guard covers the whole test, fixtures of any
scope included, since a module-scoped fixture is set up inside the first test that uses it.

No test runs the worker pool inside pytest: `wsmon serve` through click's CliRunner stops at its
settings, so a bad setting that validation lets through fails the test instead of starting a
supervisor and its workers in the test process. A test that needs a running pool starts
`wsmon serve` as a process (support.processes.Wsmon).
"""

from __future__ import annotations

import _posixsubprocess
import os
import subprocess
from collections.abc import Callable, Generator, Sequence
from typing import TYPE_CHECKING, Any, NoReturn

import pytest

if TYPE_CHECKING:
    from wsmon.exporter.config import Settings
    from wsmon.thresholds import Threshold


def _refusal(nodeid: str, describe: Callable[..., str]) -> Callable[..., NoReturn]:
    def refuse(*args: Any, **kwargs: Any) -> NoReturn:
        # pytest.fail raises a BaseException: product code catching Exception cannot swallow it.
        pytest.fail(
            f"{nodeid} started a process ({describe(*args, **kwargs)}) but is not marked"
            " integration: mark it (pytestmark = pytest.mark.integration) or do without it",
            pytrace=False,
        )

    return refuse


def _argv(args: Any) -> str:
    """A command as subprocess and os take it (a string, or a sequence of str/bytes), readable."""
    if isinstance(args, (str, bytes)):
        args = [args]
    return " ".join(os.fsdecode(arg) if isinstance(arg, bytes) else str(arg) for arg in args)


# Every way a Python process starts another, and how to name what it started. Popen._execute_child
# serves subprocess, asyncio's subprocesses and os.popen; multiprocessing forks or calls
# _posixsubprocess itself.
_LAUNCHERS: list[tuple[object, str, Callable[..., str]]] = [
    (subprocess.Popen, "_execute_child", lambda _popen, args, *_, **__: _argv(args)),
    (_posixsubprocess, "fork_exec", lambda args, *_, **__: _argv(args)),
    (os, "posix_spawn", lambda _path, argv, *_, **__: _argv(argv)),
    (os, "posix_spawnp", lambda _path, argv, *_, **__: _argv(argv)),
    (os, "system", lambda command: _argv(command)),
    (os, "fork", lambda: "os.fork()"),
    (os, "forkpty", lambda: "os.forkpty()"),
]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(
    item: pytest.Item, nextitem: pytest.Item | None
) -> Generator[None, object, object]:
    """Refuse every launcher through setup, call and teardown of a test not marked integration."""
    if item.get_closest_marker("integration") is not None:
        return (yield)
    with pytest.MonkeyPatch.context() as patch:
        for owner, name, describe in _LAUNCHERS:
            patch.setattr(owner, name, _refusal(item.nodeid, describe))
        return (yield)


def _pool_started(
    settings: Settings, thresholds: Sequence[Threshold], operations_tls: bool = False
) -> NoReturn:
    pytest.fail(
        "config validation let a bad setting through; the pool would have started"
        f" (wsmon serve in-process got {settings})",
        pytrace=False,
    )


@pytest.fixture(autouse=True)
def _no_pool_in_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """`wsmon serve` looks the pool up as wsmon.exporter.supervisor.serve when it runs."""
    monkeypatch.setattr("wsmon.exporter.supervisor.serve", _pool_started)
