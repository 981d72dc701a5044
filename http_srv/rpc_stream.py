"""One batch stream to an RPC replica (rpc_srv/stream.py): batches as WebSocket frames.

A frame each way costs a fraction of an HTTP request and answer, and one
stream carries every batch of the worker to that replica, each matched to its
answer by id. A stream that closes fails the batches still waiting with
``ServerDisconnectedError``, as a connection lost mid-request does, so the
RPC client's retry rules (rpc_client.py) are the same on both transports.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import aiohttp
import orjson

from contract.wire import STREAM_DRAINING


class BatchStream:
    """A stream's batches in flight, by frame id, and whether new ones may use it."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, on_draining: Callable[[], None]):
        self.ws = ws
        self._on_draining = on_draining
        self._waiting: dict[int, asyncio.Future[list[bytes]]] = {}
        self._next_id = 0
        self._reader = asyncio.create_task(self._read())

    @property
    def usable(self) -> bool:
        # A draining replica still answers: its stream serves until it closes, when
        # no other replica is up (on_draining steers the rest elsewhere).
        return not self.ws.closed and not self._reader.done()

    async def exchange(self, calls: list[dict[str, Any]]) -> list[bytes]:
        """Each call's reply, as JSON (the calls as /rpc/batch takes them)."""
        frame_id = self._next_id
        self._next_id += 1
        answered: asyncio.Future[list[bytes]] = asyncio.get_running_loop().create_future()
        self._waiting[frame_id] = answered
        try:
            try:
                await self.ws.send_bytes(orjson.dumps({"id": frame_id, "calls": calls}))
            except ConnectionError:  # the stream closed under us: like a dead connection
                raise aiohttp.ServerDisconnectedError("batch stream closed") from None
            return await answered
        finally:
            self._waiting.pop(frame_id, None)

    async def close(self) -> None:
        await self.ws.close()
        with contextlib.suppress(Exception):
            await self._reader

    async def _read(self) -> None:
        try:
            async for message in self.ws:
                if message.type == aiohttp.WSMsgType.BINARY:
                    head, _, lines = message.data.partition(b"\n")
                    if not head.isdigit():
                        break  # not what the service sends: the batches waiting fail
                    answered = self._waiting.pop(int(head), None)
                    if answered is not None and not answered.done():
                        answered.set_result(lines.split(b"\n"))
                elif message.type == aiohttp.WSMsgType.TEXT and message.data == STREAM_DRAINING:
                    self._on_draining()
                else:
                    break
        finally:
            lost = aiohttp.ServerDisconnectedError("batch stream closed")
            for answered in self._waiting.values():
                if not answered.done():
                    answered.set_exception(lost)
            self._waiting.clear()
