"""``GET /rpc/watch``: one WebSocket per front-end worker, carrying new-message hints.

The front end says which chats it waits on, the service says when a watch is
in place and when a message is stored in a watched chat (by any replica: the
hints come through Redis, see notifications.py). Frames are JSON objects:

- front end -> service: ``{"watch": [name, ...]}``, ``{"unwatch": [name, ...]}``,
  each name a canonical chat (as the front end pulls it) or a member, which
  stands for that member's conversation list (hints: a chat of the list got a
  message, with its send_time);
- service -> front end: ``{"watching": [chat, ...], "new": [[chat, send_time], ...]}``,
  either key may be absent: the hints of one event-loop tick in one frame.

``watching`` means: from now on every message stored in that chat is
announced on this stream. A stream that closes (the replica stops or drains,
Redis went away) may have missed hints: its client reads again what it waits
for and opens another. A frame that breaks these rules closes the stream
(1008, policy violation) with the reason.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from aiohttp import WSCloseCode, WSMsgType, web

from contract.chat import ChatError, canonicalize, check_member
from contract.wire import WATCH_FRAME_MAX, WATCH_HEARTBEAT, Code
from rpc_srv import metrics
from rpc_srv.handlers import reply
from rpc_srv.notifications import Hub
from rpc_srv.state import HUB, LIFECYCLE


class WatchStream:
    """One front end's stream: what it watches, and the hints queued for its next frame."""

    def __init__(self, ws: web.WebSocketResponse, hub: Hub) -> None:
        self.ws = ws
        self.hub = hub
        self.chats: set[str] = set()
        self._watching: list[str] = []
        self._new: list[tuple[str, int]] = []
        self._writer: asyncio.Task[None] | None = None
        self._closing: asyncio.Task[bool] | None = None

    def confirmed(self, chat: str) -> None:
        self._watching.append(chat)
        self._wake_writer()

    def announced(self, chat: str, send_time: int) -> None:
        self._new.append((chat, send_time))
        self._wake_writer()

    def close(self) -> None:
        """Close the stream (the hub lost its subscriptions, or the worker drains)."""
        if self._closing is None:
            self._closing = asyncio.ensure_future(self.ws.close(code=WSCloseCode.GOING_AWAY))

    def _wake_writer(self) -> None:
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write())

    async def _write(self) -> None:
        """Send what the tick queued as one frame, and so on until nothing is left."""
        await asyncio.sleep(0)  # the rest of this tick's hints join the frame
        while self._watching or self._new:
            frame: dict[str, Any] = {}
            if self._watching:
                frame["watching"], self._watching = self._watching, []
            if self._new:
                frame["new"], self._new = self._new, []
            if self.ws.closed:
                return
            try:
                await self.ws.send_bytes(orjson.dumps(frame))
            except ConnectionError:
                return  # the stream is gone; its reader ends it

    def handle(self, frame: Any) -> None:
        """Apply one frame of the front end's; a broken one raises ValueError."""
        if not isinstance(frame, dict) or not frame.keys() <= {"watch", "unwatch"}:
            raise ValueError('a frame must be {"watch": [...]} or {"unwatch": [...]}')
        for chat in _chats(frame.get("unwatch")):
            if chat in self.chats:
                self.chats.discard(chat)
                self.hub.unwatch(self, chat)
        for chat in _chats(frame.get("watch")):
            if chat not in self.chats:
                self.chats.add(chat)
                self.hub.watch(self, chat)

    def end(self) -> None:
        for chat in self.chats:
            self.hub.unwatch(self, chat)
        self.chats.clear()


def _chats(value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError("watch and unwatch take a list of chats and members")
    for name in value:
        if not isinstance(name, str):
            raise ValueError("a chat or member is a string")
        try:
            if ":" not in name:
                check_member(name)
            elif canonicalize(name) != name:
                raise ValueError(f"{name!r} is not a canonical chat")
        except ChatError as exc:
            raise ValueError(f"{name!r}: {exc}") from None
    return value


async def watch(request: web.Request) -> web.StreamResponse:
    if request.app[LIFECYCLE].draining:
        # Its front ends are to move on: a stream opened now would be closed at once.
        return reply({"code": Code.UNAVAILABLE, "msg": "draining"}, 503)
    ws = web.WebSocketResponse(heartbeat=WATCH_HEARTBEAT, max_msg_size=WATCH_FRAME_MAX)
    await ws.prepare(request)
    stream = WatchStream(ws, request.app[HUB])
    streams = request.app[WATCH_STREAMS]
    streams.add(stream)
    metrics.WATCH_STREAMS.inc()
    try:
        async for message in ws:
            if message.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                break
            try:
                stream.handle(orjson.loads(message.data))
            except ValueError as exc:  # orjson.JSONDecodeError is one
                await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=str(exc)[:120].encode())
                break
    finally:
        stream.end()
        streams.discard(stream)
        metrics.WATCH_STREAMS.dec()
    return ws


WATCH_STREAMS = web.AppKey("watch_streams", set[WatchStream])


def close_streams(app: web.Application) -> None:
    """Close every watch stream of this worker (it drains or stops): their clients move on."""
    streams: set[WatchStream] = app[WATCH_STREAMS]
    for stream in list(streams):
        stream.close()
