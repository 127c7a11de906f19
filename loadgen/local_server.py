"""Start a local `wsmon serve` for the run when nothing listens at a loopback target.

Only loopback targets qualify: starting a server cannot make a remote address answer, and a
remote target that does not answer is an error the user must see (exit status 2).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "localhost", "::1"})
READY_TIMEOUT_SECONDS: Final = 20.0
# SIGTERM drains (clients get 1001) within the server's --drain-seconds (10 s by default).
STOP_TIMEOUT_SECONDS: Final = 15.0


class LocalServerError(RuntimeError):
    """The local server could not be started; the message includes the end of its log."""


def address(url: str) -> tuple[str, int]:
    """(host, port) of a ws:// or wss:// URL, with the scheme's default port."""
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"{url!r} is not a ws:// or wss:// URL")
    try:
        port = parts.port
    except ValueError:  # not a number, or past 65535: urllib's wording is not for the user
        port = 0
    if port is None:
        return parts.hostname, 443 if parts.scheme == "wss" else 80
    if port == 0:
        raise ValueError(f"{url!r}: the port must be a number from 1 to 65535")
    return parts.hostname, port


def is_listening(host: str, port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


class LocalServer:
    """One `wsmon serve` subprocess on host:port; its log goes to a temporary file."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        fd, name = tempfile.mkstemp(prefix="wsmon-serve-", suffix=".log")
        os.close(fd)  # start() reopens it by name for the server's output
        self._log = Path(name)
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        """Start and wait until /readyz answers 200, or raise LocalServerError."""
        command = [
            sys.executable,
            "-P",
            "-c",
            "from wsmon.cli import main; main()",
            "serve",
            "--host",
            self.host,
            "--port",
            str(self.port),
            # A server of its own on loopback, for this run only: no tokens to hand out.
            "--no-auth",
        ]
        with self._log.open("wb") as log:
            # A session of its own: a Ctrl-C meant for the load test must not kill the server
            # before the run's connections are closed; stop() ends it afterwards.
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        host = f"[{self.host}]" if ":" in self.host else self.host
        ready_url = f"http://{host}:{self.port}/readyz"
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise LocalServerError(
                    f"wsmon serve on {self.host}:{self.port} exited with status"
                    f" {self._process.returncode}:\n{self._tail()}"
                )
            with (
                contextlib.suppress(OSError, urllib.error.URLError),
                urllib.request.urlopen(ready_url, timeout=1.0) as response,
            ):
                if response.status == 200:
                    return
            time.sleep(0.1)
        self.stop()
        raise LocalServerError(
            f"wsmon serve on {self.host}:{self.port} was not ready after"
            f" {READY_TIMEOUT_SECONDS:g} s:\n{self._tail()}"
        )

    def stop(self) -> None:
        """SIGTERM (the server drains), SIGKILL if it is still there after the drain timeout."""
        process = self._process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._log.unlink(missing_ok=True)

    def _tail(self, lines: int = 20) -> str:
        try:
            text = self._log.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])


@contextlib.contextmanager
def serving_where_missing(urls: Sequence[str]) -> Iterator[list[LocalServer]]:
    """Start a server for each distinct loopback host:port in `urls` that nothing listens on;
    stop them all on exit. Non-loopback targets are left alone.
    """
    servers: list[LocalServer] = []
    try:
        for host, port in dict.fromkeys(address(url) for url in urls):
            if host in LOOPBACK_HOSTS and not is_listening(host, port):
                server = LocalServer(host, port)
                servers.append(server)
                server.start()
        yield servers
    finally:
        for server in servers:
            server.stop()
