"""A TCP proxy on 127.0.0.1 that holds every byte from the server back for a fixed time.

It stands for a slow network or a slow server without the server knowing: the load generator's
latency thresholds are proven to fail against a real `wsmon serve` reached through it, so the
product carries no test-only delay setting. Order is kept; each chunk goes out `delay` seconds
after it arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from time import monotonic

HOST = "127.0.0.1"


class DelayProxy:
    def __init__(self, upstream_port: int, delay: float) -> None:
        self.upstream_port = upstream_port
        self.delay = delay
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._server: asyncio.Server | None = None

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._connection, HOST, 0)
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _connection(
        self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter
    ) -> None:
        try:
            server_r, server_w = await asyncio.open_connection(HOST, self.upstream_port)
        except OSError:
            client_w.close()
            return
        held: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def upstream() -> None:
            while data := await client_r.read(65536):
                server_w.write(data)
                await server_w.drain()
            server_w.write_eof()

        async def hold_back() -> None:
            while data := await server_r.read(65536):
                held.put_nowait((monotonic() + self.delay, data))
            held.put_nowait((monotonic() + self.delay, b""))

        async def release() -> None:
            while True:
                due, data = await held.get()
                await asyncio.sleep(max(0.0, due - monotonic()))
                if not data:
                    client_w.close()
                    return
                client_w.write(data)
                await client_w.drain()

        pump = asyncio.ensure_future(upstream())
        pump.add_done_callback(lambda task: task.cancelled() or task.exception())
        try:
            # Until the server's last byte (and its close) has been let through, late.
            await asyncio.gather(hold_back(), release())
        except OSError:
            pass
        finally:
            pump.cancel()
            client_w.close()
            server_w.close()

    def start(self) -> DelayProxy:
        self._thread.start()
        self._ready.wait(5)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


@contextlib.contextmanager
def delayed(upstream_port: int, delay: float) -> Iterator[DelayProxy]:
    proxy = DelayProxy(upstream_port, delay).start()
    try:
        yield proxy
    finally:
        proxy.stop()
