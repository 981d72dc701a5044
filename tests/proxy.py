"""A TCP proxy that delays every chunk it forwards, for fault tests between tiers.

It runs its own event loop in a thread, listens on a free loopback port and
forwards to a target; each chunk waits a random delay in [low, high] seconds
(order is kept). ``cut()`` drops every open connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
from collections.abc import Iterator


class DelayProxy:
    def __init__(self, target_port: int, low: float = 0.0, high: float = 0.005) -> None:
        self.target_port = target_port
        self.low, self.high = low, high
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._start())
        self._ready.set()
        self._loop.run_forever()

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while chunk := await reader.read(65536):
                await asyncio.sleep(random.uniform(self.low, self.high))
                writer.write(chunk)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        except asyncio.CancelledError:  # the proxy is stopping
            writer.close()
            raise
        self._writers |= {writer, up_writer}
        try:
            await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))
        finally:
            self._writers -= {writer, up_writer}

    def start(self) -> DelayProxy:
        self._thread.start()
        self._ready.wait(5)
        return self

    def cut(self) -> None:
        """Drop every connection now open through the proxy."""

        def drop() -> None:
            for w in list(self._writers):
                w.transport.abort()

        self._loop.call_soon_threadsafe(drop)

    def stop(self) -> None:
        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for w in list(self._writers):
                w.transport.abort()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()


@contextlib.contextmanager
def delay_proxy(target_port: int, low: float = 0.0, high: float = 0.005) -> Iterator[DelayProxy]:
    proxy = DelayProxy(target_port, low, high).start()
    try:
        yield proxy
    finally:
        proxy.stop()
