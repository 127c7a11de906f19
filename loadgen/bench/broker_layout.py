"""What Redis spends on each broker layout (docs/architecture.md, "Between instances"): a PUBLISH
to one channel with an instance's worth of subscribers, against what one channel per room would
add, a SUBSCRIBE and an UNSUBSCRIBE per room and instance, and the memory each subscription holds.

    python -P -m wsmon.loadgen.bench.broker_layout [--subscribers 2] [--publishes 50000]

Starts its own redis-server (Debian's) on a free port of 127.0.0.1, and reads Redis's own CPU
counters (INFO cpu) and memory (INFO memory) around each step.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator

import click
import redis

from .procs import free_port

PAYLOAD = b"x" * 300  # about a chat delivery with its control header
ROOMS = 100_000


@contextlib.contextmanager
def redis_server() -> Iterator[int]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise click.ClickException("redis-server is not installed: `make tools` installs it")
    port = free_port()
    argv = [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no"]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL)
    try:
        client = redis.Redis(port=port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(10)


def answered(pubsub: redis.client.PubSub, command: Callable[..., object], names: list[str]) -> None:
    """`command` (SUBSCRIBE or UNSUBSCRIBE) for every name, a thousand at a time, and every
    confirmation read, so that Redis has done the work when this returns."""
    for start in range(0, len(names), 1000):
        command(*names[start : start + 1000])
    while pubsub.get_message(timeout=0.5):
        pass


def cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


@click.command()
@click.option("--subscribers", default=2, show_default=True, help="Instances subscribed.")
@click.option("--publishes", default=50_000, show_default=True, help="PUBLISHes to time.")
def main(subscribers: int, publishes: int) -> None:
    """Redis's CPU per PUBLISH on one channel, and per room subscription, on this machine."""
    with redis_server() as port:
        client = redis.Redis(port=port)
        stop = threading.Event()
        listeners = []
        for _ in range(subscribers):
            pubsub = redis.Redis(port=port).pubsub()  # type: ignore[no-untyped-call, unused-ignore]
            pubsub.subscribe("wsmon:deliveries")
            listeners.append(pubsub)

        def drain(pubsub: redis.client.PubSub) -> None:
            while not stop.is_set():
                pubsub.get_message(timeout=0.1)

        threads = [threading.Thread(target=drain, args=(p,), daemon=True) for p in listeners]
        for thread in threads:
            thread.start()
        before = cpu(client)
        pipe = client.pipeline(transaction=False)
        for index in range(publishes):
            pipe.publish("wsmon:deliveries", PAYLOAD)
            if index % 256 == 255:
                pipe.execute()
        pipe.execute()
        per_publish = (cpu(client) - before) / publishes
        stop.set()
        click.echo(
            f"PUBLISH of {len(PAYLOAD)} B to one channel with {subscribers} subscribers:"
            f" {per_publish * 1e6:.2f} us of Redis CPU each ({publishes} publishes)"
        )
        rooms = redis.Redis(port=port).pubsub()  # type: ignore[no-untyped-call, unused-ignore]
        names = [f"wsmon:room:{index}" for index in range(ROOMS)]
        memory = int(client.info("memory")["used_memory"])
        before = cpu(client)
        answered(rooms, rooms.subscribe, names)
        subscribe = (cpu(client) - before) / ROOMS
        held = (int(client.info("memory")["used_memory"]) - memory) / ROOMS
        before = cpu(client)
        answered(rooms, rooms.unsubscribe, names)
        unsubscribe = (cpu(client) - before) / ROOMS
        click.echo(
            f"one channel per room ({ROOMS} rooms on one instance): SUBSCRIBE"
            f" {subscribe * 1e6:.2f} us, UNSUBSCRIBE {unsubscribe * 1e6:.2f} us of Redis CPU"
            f" each, {held:.0f} B of Redis memory per subscription"
        )


if __name__ == "__main__":
    main()
