"""Child processes for tests: a generic `Service`, `wsmon serve` as `Wsmon`, free ports, /proc.

A service's stdout and stderr are joined and read line by line by a thread, so a full pipe never
blocks the child and a failing test can show everything it printed. Processes are stopped by their
own pid: SIGTERM, then SIGKILL if they do not exit in time.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest

from support.metrics import Metrics

# One copy of each in the project, re-exported here for the test folders.
from wsmon.loadgen.bench.procs import children as children
from wsmon.loadgen.bench.procs import free_port as free_port

HOST = "127.0.0.1"
WSMON = Path(sys.executable).parent / "wsmon"
READY_LINE = re.compile(r"serving on http://127\.0\.0\.1:(\d+)")
START_TIMEOUT = 15.0  # seconds for `serving on http://...` to appear in wsmon's log
STOP_TIMEOUT = 15.0  # SIGTERM drains for at most --drain-seconds (10 s by default) + 2 s
SCRAPE_TIMEOUT = 10.0


def cmdline(pid: int) -> list[str]:
    """The argv of `pid`; empty once it is gone."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except OSError:
        return []


def pid_exists(pid: int) -> bool:
    """True while `pid` is a process that has not exited (zombies count as exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


# -- processes -----------------------------------------------------------------------------------


class Service:
    """One child process, its combined output collected line by line into `lines`."""

    def __init__(
        self, name: str, argv: Sequence[str], *, env: Mapping[str, str] | None = None
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.lines: list[str] = []
        self._output = threading.Condition()  # notified on every line read, and at EOF
        self._eof = False
        self.process = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,  # logs go to stderr; stdout joins it so nothing is lost
            text=True,
            env=env,
        )
        self._reader = threading.Thread(
            target=self._read, name=f"{name}-{self.pid}-log", daemon=True
        )
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._output:
                self.lines.append(line)
                self._output.notify_all()
        with self._output:
            self._eof = True
            self._output.notify_all()

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def log(self) -> str:
        return "".join(self.lines)

    def alive(self) -> bool:
        return self.process.poll() is None

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float) -> int:
        """The exit status; raises subprocess.TimeoutExpired if still running after `timeout`."""
        return self.process.wait(timeout)

    def wait_for(self, pattern: re.Pattern[str], timeout: float) -> re.Match[str] | None:
        """The first output line (already read or still to come) that `pattern` matches; None when
        the output ends (the process exited) or `timeout` seconds pass without one."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self._output:
            while True:
                for line in self.lines[seen:]:
                    if found := pattern.search(line):
                        return found
                seen = len(self.lines)
                remaining = deadline - time.monotonic()
                if self._eof or remaining <= 0:
                    return None
                self._output.wait(remaining)

    def companions(self) -> list[int]:
        """Other pids to SIGKILL with this one when it does not stop in time (none here)."""
        return []

    def stop(self) -> int:
        """SIGTERM and wait; if that hangs, SIGKILL the process and its companions by pid."""
        if self.alive():
            # Read before SIGTERM: once the process is gone its children are someone else's.
            companions = self.companions()
            self.process.terminate()
            try:
                self.process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                for pid in companions:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
        self._reader.join(5)
        return self.process.returncode


class Wsmon(Service):
    """`wsmon serve --host 127.0.0.1 --port 0 FLAGS...`, started and ready to serve.

    The supervisor owns the port and forks the workers; the port is the one its log announces
    (`serving on http://127.0.0.1:PORT`). WSMON_* variables of the calling environment are not
    passed on, so the flags (and `environment`, when given) alone configure it.
    """

    def __init__(
        self,
        *flags: str,
        start_timeout: float = START_TIMEOUT,
        environment: Mapping[str, str] | None = None,
    ) -> None:
        self.flags = flags
        env = {k: v for k, v in os.environ.items() if not k.startswith("WSMON_")}
        env.update(environment or {})
        env["PYTHONUNBUFFERED"] = "1"
        # Tests speak to it without tokens unless they configure authentication themselves.
        configured = any(flag.startswith(("--auth-", "--no-auth")) for flag in flags) or any(
            key.startswith("WSMON_AUTH_") for key in env
        )
        no_auth = () if configured else ("--no-auth",)
        argv = [str(WSMON), "serve", "--host", HOST, "--port", "0", *no_auth, *flags]
        super().__init__("wsmon", argv, env=env)
        ready = self.wait_for(READY_LINE, start_timeout)
        if ready is None:
            self.stop()
            pytest.fail(
                f"{' '.join(self.argv)} did not print 'serving on http://{HOST}:PORT' within "
                f"{start_timeout:.0f}s (exit status {self.process.poll()}); log:\n{self.log}"
            )
        self.port = int(ready.group(1))

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def ws_url(self, path: str = "/ws") -> str:
        return f"ws://{HOST}:{self.port}{path}"

    def worker_pids(self) -> dict[int, int]:
        """Worker index -> pid of the supervisor's live worker children."""
        workers: dict[int, int] = {}
        for child in children(self.pid):
            argv = cmdline(child)
            if "wsmon.exporter.worker" in argv and "--index" in argv and pid_exists(child):
                workers[int(argv[argv.index("--index") + 1])] = child
        return workers

    def companions(self) -> list[int]:
        """The workers: killed by pid along with the supervisor if the drain hangs."""
        return list(self.worker_pids().values())

    def scrape(self) -> Metrics:
        """GET /metrics (directly, never through a proxy) and parse it."""
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(f"{self.base_url}/metrics", timeout=SCRAPE_TIMEOUT) as response:
            status, body = response.status, response.read().decode()
        assert status == 200, body
        return Metrics.parse(body)


@contextlib.contextmanager
def stopped(pid: int) -> Iterator[None]:
    """The process stopped (SIGSTOP: alive, holding what it was handed, answering nothing)."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


# Debian's chromium, headless in a container: root there needs --no-sandbox, and nothing may
# reach the network (updates, sync, first-run pages).
CHROMIUM_FLAGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
