"""The benchmark's client processes: `listen` when the server closes, `holding` when things fail,
and the broker section's `rooms` client against two real instances and a redis-server.

`listen` runs as the benchmark runs it (`python -P -m wsmon.loadgen.bench.clients`) against a
scripted WebSocket server on a plain socket, so the test decides exactly when the server answers
and closes. `holding` gets stand-in client processes, so each way it can fail is quick to bring
about. Every test here starts processes.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from time import perf_counter
from typing import Any

import pytest
from support.polling import wait_until
from support.processes import HOST

from wsmon.loadgen.bench import crowd, gap, sections
from wsmon.loadgen.bench.procs import (
    Server,
    backlog_drops,
    cpu_seconds,
    cpu_ticks,
    netdev_max_backlog,
    running,
    settle,
    start_baseline,
    start_wsmon,
    stolen,
)

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
UPGRADED = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: not-checked\r\n\r\n"
)


def frame(payload: dict[str, Any]) -> bytes:
    """An unmasked text frame, as a server sends it (payloads under 126 bytes)."""
    data = json.dumps(payload).encode()
    assert len(data) < 126
    return bytes([0x81, len(data)]) + data


Answer = Callable[[bytes], bytes | None]


class ScriptedServer:
    """Accepts on 127.0.0.1:0; `answer(request) -> bytes | None` is sent to each connection
    after its request (None: close at once, without a word). With `hang_up` the server closes
    each connection right after its answer; otherwise it keeps them in `connections`."""

    def __init__(self, answer: Answer, *, hang_up: bool = False) -> None:
        self.listener = socket.create_server((HOST, 0))
        self.url = f"ws://{HOST}:{self.listener.getsockname()[1]}/ws"
        self.answer = answer
        self.hang_up = hang_up
        self.connections: list[socket.socket] = []
        self.peers: list[str] = []  # each connection's source address, in order
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, peer = self.listener.accept()
            except OSError:  # closed by close()
                return
            self.peers.append(peer[0])
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                request += chunk
            reply = self.answer(request)
            if reply is None:
                conn.close()
                continue
            if self.hang_up:
                conn.sendall(reply)
                conn.close()  # the whole request was read, so this sends FIN after the reply
                continue
            self.connections.append(conn)  # before the reply: the client may be ready at once
            conn.sendall(reply)

    def close(self) -> None:
        self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept(); close() would not
        self.listener.close()
        self.thread.join(5)
        for conn in self.connections:
            conn.close()


Scripted = Callable[..., ScriptedServer]


@pytest.fixture
def scripted() -> Iterator[Scripted]:
    started: list[ScriptedServer] = []

    def start(answer: Answer, *, hang_up: bool = False) -> ScriptedServer:
        started.append(ScriptedServer(answer, hang_up=hang_up))
        return started[-1]

    yield start
    for server in started:
        server.close()


def listener(url: str, connections: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [
            sys.executable,
            "-P",
            "-m",
            "wsmon.loadgen.bench.clients",
            "listen",
            url,
            "--connections",
            str(connections),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def upgrading(scripted: Scripted, upgraded: int, busy: int) -> ScriptedServer:
    """A server that upgrades the first `upgraded` connections, answers 503 to the next `busy`,
    and closes every one after them without a word."""
    replies = iter(
        [UPGRADED] * upgraded + [b"HTTP/1.1 503 Busy\r\nContent-Length: 0\r\n\r\n"] * busy
    )
    return scripted(lambda request: next(replies, None))


def bench_client(mode: str, url: str, *args: str) -> subprocess.Popen[str]:
    """A raw-socket bench client (storm, crowd) of ten connections from two source addresses."""
    return subprocess.Popen(
        [
            *(sys.executable, "-P", "-m", "wsmon.loadgen.bench.clients", mode, url),
            *("--connections", "10", "--sources", "127.0.0.2,127.0.0.3", *args),
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )


def sockets_of(pid: int) -> int:
    """How many sockets `pid` holds open (its descriptors that link to socket:[inode]). A
    descriptor it closes between the listing and the reading of its link is not counted."""
    held = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(FileNotFoundError):
            held += os.readlink(fd).startswith("socket:")
    return held


def test_listen_drops_connections_the_server_closes(scripted: Scripted) -> None:
    server = scripted(lambda request: UPGRADED)
    proc = listener(server.url, 3)
    try:
        assert proc.stdout is not None
        ready = json.loads(proc.stdout.readline())
        assert (ready["ready"], ready["failed_connections"]) == (3, 0)
        assert sockets_of(proc.pid) == 3
        for conn in server.connections:
            conn.sendall(frame({"type": "broadcast", "payload": {"t": perf_counter(), "n": 0}}))
            conn.close()
        # The client has seen every connection end once it has closed all three sockets.
        wait_until(
            lambda: sockets_of(proc.pid),
            lambda held: held == 0,
            within=10,
            what="the client closes the connections the server closed",
        )
        # A closed socket stays readable: a client that kept polling it would use a whole core.
        # Measured over a second in which the client must keep listening (not exit).
        before = cpu_seconds([proc.pid])
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=1.0)
        spent = cpu_seconds([proc.pid]) - before
        assert spent < 0.1, f"the client spent {spent:.2f} s of CPU in 1 s with nothing to read"
        proc.terminate()
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    report = json.loads(out.splitlines()[-1])
    assert report["closed_by_server"] == 3
    assert list(report["arrivals"]) == ["0"]
    assert len(report["arrivals"]["0"]) == 3
    assert all(0 < seconds < 5 for seconds in report["arrivals"]["0"])


@pytest.mark.parametrize(
    ("answer", "received"),
    [(None, b""), (b"HTTP/1.1 101 Swi", b"HTTP/1.1 101 Swi")],
    ids=["closed before answering", "closed mid-answer"],
)
def test_listen_fails_clearly_when_the_server_closes_during_the_handshake(
    scripted: Scripted, answer: bytes | None, received: bytes
) -> None:
    server = scripted(lambda request: answer, hang_up=True)
    proc = listener(server.url, 2)
    try:
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    port = server.url.split(":")[2].split("/")[0]
    assert proc.returncode == 1
    assert out == ""  # never ready
    assert err.strip() == (
        f"handshake failed: {HOST}:{port} closed connection 1 of 2 after {len(received)} bytes"
        f" of its answer: {received!r}"
    )


# holding: stand-in clients print a ready line, then their final line on SIGTERM ---------------

STAND_IN = """
import json, signal, sys
behaviour, connections = sys.argv[1], int(sys.argv[2])
if behaviour == "crash":
    sys.exit(3)
def finish(*_):
    print(json.dumps({"closed": connections}), flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, signal.SIG_IGN if behaviour == "stubborn" else finish)
print(json.dumps({"ready": connections, "connect_seconds": 0.1, "workers": None}), flush=True)
while True:
    signal.pause()
"""

SERVER = Server("stand-in", "ws://127.0.0.1:9/ws", [])


def stand_ins(monkeypatch: pytest.MonkeyPatch, *behaviours: str) -> list[subprocess.Popen[bytes]]:
    """Make `sections.client` start stand-ins behaving as told, in order; returns them."""
    started: list[subprocess.Popen[bytes]] = []
    queue = list(behaviours)

    def client(mode: str, server: Server, connections: int, *args: str) -> Any:
        proc = subprocess.Popen(
            [sys.executable, "-c", STAND_IN, queue.pop(0), str(connections)],
            stdout=subprocess.PIPE,
        )
        started.append(proc)
        return proc

    monkeypatch.setattr(sections, "client", client)
    return started


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_holding_releases_the_clients_and_reads_their_reports(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    procs = stand_ins(monkeypatch, "polite", "polite")
    with sections.holding(SERVER, 5) as held:
        assert held.ready == [
            {"ready": 3, "connect_seconds": 0.1, "workers": None},
            {"ready": 2, "connect_seconds": 0.1, "workers": None},
        ]
        assert [proc.poll() for proc in procs] == [None, None]
        assert held.finished == []
    assert held.finished == [{"closed": 3}, {"closed": 2}]
    assert [proc.returncode for proc in procs] == [0, 0]
    assert all(gone(proc.pid) for proc in procs)


def test_holding_stops_the_clients_when_the_block_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    procs = stand_ins(monkeypatch, "polite", "polite")
    with pytest.raises(ZeroDivisionError), sections.holding(SERVER, 4):
        _ = 1 / 0
    assert all(proc.returncode is not None for proc in procs)
    assert all(gone(proc.pid) for proc in procs)


def test_holding_kills_a_client_that_ignores_sigterm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sections, "STOP_SECONDS", 0.5)
    procs = stand_ins(monkeypatch, "polite", "stubborn")
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="measuring failed"), sections.holding(SERVER, 4):
        raise RuntimeError("measuring failed")
    assert time.monotonic() - started < 5
    assert [proc.returncode for proc in procs] == [0, -9]
    assert all(gone(proc.pid) for proc in procs)


def test_holding_stops_the_others_when_a_client_dies_before_ready(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    procs = stand_ins(monkeypatch, "polite", "crash")
    entered = False
    with (
        pytest.raises(RuntimeError, match=r"^benchmark client \(hold\) exited with code 3 before"),
        sections.holding(SERVER, 4),
    ):
        entered = True
    assert not entered
    assert [proc.returncode for proc in procs] == [0, 3]
    assert all(gone(proc.pid) for proc in procs)


# broker: the rooms client against two real instances and a real redis-server ----------------


def test_broker_section_times_both_paths_and_counts_each_process() -> None:
    """The section end to end, small: every chat reaches its members on both instances through
    Redis with the broker, only those on A without; both sections come back filled in, C (no
    connections) counted as a subscriber."""
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is not installed; run `make tools`")
    rooms, members, rate, seconds = 2, 2, 20.0, 1.0
    latency, cost = sections.broker_delivery(
        rounds=1, seconds=seconds, rooms=rooms, members=members, rate=rate, idle_seconds=0.2
    )
    rows = {(row["path"], row["broker"]): row for row in latency.rows}
    same, other, cross = (shown for _, shown in sections.PATHS)
    on = {path: rows[(path, "on")]["deliveries"] for path in (same, other, cross)}
    # Each chat: one member on each of A's two workers, two on B.
    assert on[cross] == on[same] + on[other] > 0
    assert on[same] == on[other]
    assert (cross, "off") not in rows
    assert rows[(same, "off")]["deliveries"] > 0
    (ratio,) = [row for row in latency.rows if row["path"].startswith("ratio")]
    assert ratio["delivered"] == ratio["expected"] > 0
    assert ratio["unexpected"] == 0
    assert ratio["p50 ms"] > 0
    assert ratio["p99 ms"] > 0
    for row in latency.rows[: len(on) + 2]:
        assert 0 < row["p50 ms"] <= row["p99 ms"] <= row["max ms"] < 1000
    parts = {row["process"]: row for row in cost.rows}
    assert list(parts) == [
        *(f"{name} {part}" for name in "ABC" for part in ("supervisor", "workers")),
        "redis",
    ]
    # B's and C's supervisors have nothing to relay without the broker: all of it is broker.
    assert parts["B supervisor"]["on - off µs/chat"] > 0
    assert parts["C supervisor"]["on - off µs/chat"] > 0
    assert all(row["broker on µs/chat"] > 0 for row in cost.rows)
    assert "PUBLISH" in cost.note


# Issue 14: the reconnect storm and worker scaling ------------------------------------------------


def test_worker_counts_double_up_to_the_cpus() -> None:
    assert sections.worker_counts(1) == [1]
    assert sections.worker_counts(2) == [1, 2]
    assert sections.worker_counts(6) == [1, 2, 4, 6]
    assert sections.worker_counts(8) == [1, 2, 4, 8]


def test_storm_client_counts_admissions_and_each_kind_of_failure(scripted: Scripted) -> None:
    """Ten connections at once from two source addresses against a server that upgrades half,
    answers 503 to three and closes two without a word: the client says so, and times only the
    upgraded ones."""
    server = upgrading(scripted, 5, busy=3)
    proc = bench_client("storm", server.url, "--timeout", "10")
    try:
        assert proc.stdout is not None
        assert json.loads(proc.stdout.readline()) == {"ready": 10}
        proc.send_signal(signal.SIGUSR1)
        figures = json.loads(proc.stdout.readline())
        # It holds what it opened until told to stop, so that a storm's clients finishing at
        # different times do not change the load the others' connections meet.
        time.sleep(0.3)
        assert proc.poll() is None
        proc.terminate()
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0
    assert figures["admitted"] == 5
    assert figures["failures"] == {"status 503": 3, "closed before the handshake": 2}
    assert figures["began"] < figures["last_admitted"] < perf_counter()
    assert figures["workers"] is None  # not asked to expect wsmon's welcome


def test_storm_section_admits_everyone_below_capacity_and_reports_the_queue() -> None:
    """The section end to end, small: every case's connections admitted (case c's 40 are within
    the rate limit's burst), both targets met, each worker's hand-off queue peak reported."""
    section = sections.storm(40, rounds=1, sources=2)
    rows = {(row["server"], row["case"][0]): row for row in section.rows}
    assert sorted(rows) == sorted(
        [(server, case) for server in ("bare aiohttp x2", "wsmon --workers 2") for case in "abd"]
        + [("wsmon --workers 2", "c")]
    )
    for (server, case), row in rows.items():
        assert row["admitted"] == (60 if case == "d" else 40), (server, case)
        assert row["refused"] == 0
        assert row["failures"] == "none"
        assert 0 < row["handshake p50 ms"] <= row["handshake p99 ms"] <= row["max ms"]
        assert row["s to admit all"] > 0
        if server.startswith("wsmon"):
            assert len(row["hand-off queue peak"].split(", ")) == 2
            assert row["gate refused"] == row["no worker could take"] == 0
            assert row["worker spread"] is not None
            assert row["worker spread"] <= 1.15
    assert [target["met"] for target in section.targets] == [True, True]


def test_scaling_section_reports_every_worker_count_for_both_servers() -> None:
    section = sections.scaling(seconds=0.5, rounds=1, connections=5)
    counts = sections.worker_counts(len(os.sched_getaffinity(0)))
    assert [(row["server"].split()[0], row["N"]) for row in section.rows] == [
        (kind, n) for kind in ("bare", "wsmon") for n in counts
    ]
    for row in section.rows:
        assert row["msg/s"] > 0
        assert row["server CPU µs/msg"] > 0
        shares = [int(share) for share in row["connections per process"].split(", ")]
        assert sum(shares) == 5 * row["N"]
        assert len(shares) == row["N"]
        if row["N"] == 1:
            assert row["speed-up"] == 1
    wsmon_top = section.rows[-1]
    if wsmon_top["N"] > 1:
        assert wsmon_top["spread"] == 1  # least-loaded hand-off: 5 and 5
    assert len(section.targets) == (2 if counts[-1] > 1 else 1)


def test_crowd_client_opens_in_two_halves_from_its_sources_and_counts_failures(
    scripted: Scripted,
) -> None:
    """Ten connections one at a time from two source addresses, against a server that upgrades
    six, answers 503 to two and closes two without a word: the client stops halfway (five open),
    then reports six open and the failures by kind; SIGTERM while it waits ends it cleanly."""
    server = upgrading(scripted, 6, busy=2)
    proc = bench_client("crowd", server.url, "--in-flight", "1")
    try:
        assert proc.stdout is not None
        assert json.loads(proc.stdout.readline()) == {"halfway": 5}
        proc.send_signal(signal.SIGUSR1)
        ready = json.loads(proc.stdout.readline())
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0
    assert ready["ready"] == 6
    assert ready["connect_seconds"] > 0
    assert ready["failures"] == {"status 503": 2, "closed before the handshake": 2}
    assert ready["client_bytes_per_connection"] >= 0
    assert ready["workers"] is None  # not asked to expect wsmon's welcome
    assert json.loads(out.strip().splitlines()[-1]) == {"closed": 6}
    assert server.peers == ["127.0.0.2", "127.0.0.3"] * 5


def test_crowd_section_holds_every_connection_and_answers_every_echo() -> None:
    """The section end to end, small: 400 connections on each server, 1 in 10 sending one echo
    in its second; both admit all, answer all, and the figures the report quotes are there."""
    section = crowd.crowd(400, every=10, seconds=1)
    assert [row["server"] for row in section.rows] == [
        "bare aiohttp x2, keepalive 30 s",
        "wsmon --workers 2",
    ]
    for row in section.rows:
        assert row["admitted"] == 400
        assert row["failures"] == "none"
        assert row["senders"] == 40
        assert row["sent"] == 40  # one each in one second, the first at a random phase in it
        assert row["message success %"] == 100
        assert 0 < row["p50 ms"] <= row["p99 ms"] <= row["max ms"]
        assert row["KiB per idle connection"] > 0
        assert row["most descriptors in one process"] >= 200
        assert row["closed by server"] == 0
    bare_row, wsmon_row = section.rows
    # The supervisor balances exactly; bare aiohttp's share is the kernel's hash, which may split
    # 400 connections 190/210, but gives each process some: no worse than a third and two thirds.
    assert wsmon_row["spread"] <= 1.05
    assert bare_row["spread"] < 2
    assert 0 < wsmon_row["/metrics p50 ms"] <= wsmon_row["/metrics p99 ms"]
    assert wsmon_row["supervisor µs per connection"] > 0
    assert len(wsmon_row["hand-off queue peak"].split(", ")) == 2
    # 400 connections' objects make the workers collect while they open.
    assert wsmon_row["longest GC pause opening ms"] > 0
    assert wsmon_row["GC s opening"] > 0
    targets = {target["target"].split(" ≤")[0].split(" ≥")[0]: target for target in section.targets}
    assert targets["wsmon connections refused"]["met"]
    assert targets["wsmon message success"]["met"]
    assert "The next step, 800 connections" in section.note
    for row in section.rows:  # the kernel's losses, read from /proc/net/softnet_stat
        for column in ("backlog drops opening", "backlog drops held"):
            assert isinstance(row[column], int)
            assert row[column] >= 0
    # The note names the backlog's size as this machine has it.
    assert f"net.core.netdev_max_backlog, {netdev_max_backlog():,} here" in section.note


def keepalive_due(port: int) -> list[float]:
    """Seconds until each established socket on local `port` fires its keepalive timer
    (/proc/net/tcp's tr:tm->when, 02 for keepalive, in clock ticks); inf for one with no
    keepalive timer armed."""
    due = []
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == "01":
            timer, when = fields[5].split(":")
            due.append(int(when, 16) / os.sysconf("SC_CLK_TCK") if timer == "02" else math.inf)
    return due


@pytest.mark.parametrize(("keepalive", "within"), [(30, True), (0, False)])
def test_bare_aiohttp_arms_keepalive_on_every_connection_when_asked(
    keepalive: int, within: bool
) -> None:
    """The crowd section's like for like: bare aiohttp's connections get wsmon's 30 s keepalive,
    every one of them, from the listening socket they inherit it from. Without it, aiohttp's own
    SO_KEEPALIVE leaves them to the system's idle time (7,200 s by default)."""
    with running(start_baseline("aiohttp", 2, keepalive)) as server:
        port = int(server.url.split(":")[2].split("/")[0])
        clients = [socket.create_connection((HOST, port)) for _ in range(6)]
        try:
            due = wait_until(
                lambda: keepalive_due(port),
                lambda found: len(found) == 6,
                within=5,
                what="six connections accepted",
            )
            assert [0 < seconds <= 30 for seconds in due] == [within] * 6, due
        finally:
            for sock in clients:
                sock.close()


def test_longest_collection_is_the_bound_of_the_slowest_bucket_that_grew() -> None:
    inf = float("inf")
    before = crowd.Collections({0.001: 5, 0.01: 6, 0.1: 6, inf: 6}, 0.01)
    after = crowd.Collections({0.001: 9, 0.01: 11, 0.1: 12, inf: 12}, 0.2)
    assert after.longest_since(before) == 0.1  # one of the six new ones took over 10 ms
    assert before.longest_since(before) == 0.0
    assert crowd.Collections({0.1: 6, inf: 7}, 9).longest_since(before) == inf


def test_gap_section_measures_three_servers_from_one_client() -> None:
    """Bare aiohttp with SO_REUSEPORT, bare aiohttp on two ports (the client's URLs, one per
    process, its connections shared between them) and wsmon --workers 2: each answers, costs
    CPU, and its sleeps are counted."""
    section = gap.gap(seconds=0.5, rounds=1)
    assert [row["server"] for row in section.rows] == [
        "bare aiohttp x2 (SO_REUSEPORT)",
        "bare aiohttp x2, two ports",
        "wsmon --workers 2",
    ]
    for row in section.rows:
        assert row["msg/s"] > 0
        assert row["server CPU µs/msg"] > 0
        assert row["sleeps per 1,000 msg"] > 0  # two servers on one client's load wait for work
    bare, balanced, wsmon_row = section.rows
    assert bare["of which the supervisor"] == balanced["of which the supervisor"] == 0
    assert 0 < wsmon_row["of which the supervisor"] < wsmon_row["server CPU µs/msg"] / 10
    assert len(section.targets) == 2
    assert all(target["measured"] > 0 for target in section.targets)
    # Each runs at the fixed rate too, on the same server after its ping-pong run.
    for row in section.rows:
        assert row["fixed-rate CPU µs/msg"] > 0
        assert row["fixed-rate sleeps per 1,000 msg"] > 0
        assert len(row["fixed-rate CPU µs/msg of each run"].split(", ")) == 1
    at_rate = wsmon_row["fixed-rate CPU µs/msg"] / balanced["fixed-rate CPU µs/msg"]
    assert f"{at_rate:.2f} against two ports shared evenly." in section.note
    # One round: its pair's ratio is the round-by-round median, the least and the most.
    ratio = wsmon_row["runs"][0]["server CPU µs/msg"] / bare["runs"][0]["server CPU µs/msg"]
    assert f"median {ratio:.2f}, from {ratio:.2f} to {ratio:.2f}" in section.note


def test_a_client_given_several_urls_shares_its_connections_among_them() -> None:
    """Bare aiohttp on two ports: 7 connections from one client land 4 and 3, as wsmon's
    supervisor would share them, for every client mode built on aiohttp (hold, pingpong, open)."""
    server = gap.two_ports()
    try:
        first, second = (proc.pid for proc in server.launched)
        listening = sockets_of(first), sockets_of(second)
        with sections.holding(server, 7, processes=1) as held:
            assert held.ready[0]["ready"] == 7
            assert (sockets_of(first) - listening[0], sockets_of(second) - listening[1]) == (4, 3)
    finally:
        server.stop()


# Spends `busy` CPU seconds, then sleeps: a server still starting up, then idle.
BUSY_THEN_IDLE = (
    "import time\n"
    "end = time.process_time() + {busy}\n"
    "while time.process_time() < end: pass\n"
    "time.sleep(60)"
)


def _busy_server(busy: float) -> Server:
    command = [sys.executable, "-c", BUSY_THEN_IDLE.format(busy=busy)]
    return Server("busy", "ws://unused", [subprocess.Popen(command)])


def test_settle_waits_until_the_server_stops_spending_cpu() -> None:
    """A server that spends 0.6 CPU seconds after it starts is measured from when it is done."""
    server = _busy_server(0.6)
    try:
        settle(server)
        assert server.cpu() >= 0.6
        before = server.cpu()
        time.sleep(0.3)
        assert server.cpu() - before < 0.01
    finally:
        server.stop()


def test_settle_names_and_stops_a_server_that_never_goes_quiet() -> None:
    server = _busy_server(60)
    try:
        with pytest.raises(RuntimeError, match="busy was still busy 1s after"):
            settle(server, timeout=1)
        assert server.launched[0].poll() is not None
    finally:
        server.stop()


def test_start_wsmon_returns_a_pool_whose_workers_have_finished_starting() -> None:
    """The port answers before the workers have built their applications: the CPU they spend
    doing it must be behind us when a measurement begins (it was charged to the gap's messages)."""
    with running(start_wsmon(2)) as server:
        before = server.cpu()
        time.sleep(0.5)
        assert server.cpu() - before < 0.02


def test_broadcast_section_sets_each_broadcast_against_the_cpu_it_cost() -> None:
    fanout, scrape = sections.broadcast_and_scrape(200, broadcasts=3)
    rows = {row["measured at"].split(":")[0].split(" (")[0]: row for row in fanout.rows}
    assert rows["clients"]["delivered"] == rows["clients"]["expected"] == 200 * 3
    cpu_rows = [row for row in fanout.rows if row["measured at"].startswith("CPU per broadcast")]
    assert len(cpu_rows) == 2
    for row in cpu_rows:
        assert row["broadcasts"] == 3
        assert 0 < row["p50 ms"] <= row["p99 ms"] <= row["max ms"]
    assert rows["floor"]["broadcasts"] == 40  # rounds of the kernel's floor
    own = [t for t in fanout.targets if t["target"].startswith("p99 of each broadcast")]
    assert len(own) == 1
    assert own[0]["measured"] > 0
    assert "Each broadcast ÷ half the CPU it cost: p50" in fanout.note
    assert scrape.rows[0]["scrapes"] == sections.METRICS_SCRAPES


def test_backlog_drops_sums_every_cores_hex_drop_column(tmp_path: Path) -> None:
    """softnet_stat's counters are hex, a line per core: 0x10 + 0x0a dropped, not 10 + 0a."""
    stat = tmp_path / "softnet_stat"
    stat.write_text(
        "0004a3c2 00000010 00000003 00000000 00000000 00000000 00000000 00000000\n"
        "0001ff00 0000000a 00000000 00000000 00000000 00000000 00000000 00000000\n"
    )
    assert backlog_drops(stat) == 26
    assert backlog_drops() >= 0  # this machine's own file reads as well


def test_stolen_is_the_share_of_cpu_time_the_hypervisor_took() -> None:
    assert stolen((1000, 50), (1400, 70)) == pytest.approx(5.0)
    assert stolen((1000, 50), (1000, 50)) is None  # no time passed: no share to give
    before = cpu_ticks()
    time.sleep(0.1)
    after = cpu_ticks()
    assert after[0] > before[0]
    assert 0 <= after[1] - before[1] <= after[0] - before[0]


def test_bench_reports_what_the_hypervisor_stole_during_each_section(tmp_path: Path) -> None:
    """`make bench` writes the machine's steal beside each section, in both the tables and the
    JSON, so that a run slowed from outside can be told apart (--quick, one section)."""
    bench = [sys.executable, "-P", "-m", "wsmon.loadgen.bench"]
    subprocess.run(
        [*bench, "--quick", "--only", "echo", "--out", str(tmp_path)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    (report,) = tmp_path.glob("bench-*.md")
    assert "Stolen by the hypervisor while this section ran: " in report.read_text()
    (document,) = tmp_path.glob("bench-*.json")
    (section,) = json.loads(document.read_text())["sections"]
    assert 0 <= section["stolen_percent"] <= 100
