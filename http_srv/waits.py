"""Requests that wait for new messages (``wait``), and this worker's watch stream.

A pull whose page is empty and that may wait is parked here, and so is a
chats request whose list has nothing newer than its ``since``. Parked
requests that ask the same (a `PullQuery` or a `ChatsQuery` equal in every
field) form one group: a hint that a message was stored in their chat, or
in a chat of their user's list, makes one read for the whole group (one RPC
call), and the group is answered as soon as the read is what it waits for.
A parked request answers what it first read once its `wait` is over, and
releases its place at once when its client goes away (Sanic cancels it).

The hints come on one watch stream per worker (rpc_srv/watch.py), opened on
one replica of the RPC service; whichever replica stored a message, the hint
comes through Redis. A hint is only a hint:

- a pull parked on a chat whose watch is not confirmed yet, or that saw a
  hint since its first read, reads its page once more when the watch is in
  place, so a message stored between its first read and its watch is not
  missed;
- when the stream closes (its replica stops or drains, Redis went away),
  every group reads its page again: a message stored meanwhile is answered,
  a store that is down answers 503, the others wait on. The stream is opened
  again (with a backoff of ``RECONNECT_MIN`` to ``RECONNECT_MAX`` seconds),
  on another replica if there is one, and every chat is watched anew.

Below, "chat" is a watched name: a chat, or a member (their list, whose
hints come on the same stream).

A chat nobody waits on any more stays watched ``LINGER`` seconds, so that a
client looping on it does not have it watched and unwatched for each message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from contract import chats_cursor
from contract.requests import ChatsRequest, PullRequest
from contract.wire import EMPTY_PAGE_PREFIX
from http_srv import metrics
from http_srv.errors import ApiError
from http_srv.rpc_client import RpcClient

log = logging.getLogger(__name__)

LINGER = 10.0
RECONNECT_MIN = 0.05
RECONNECT_MAX = 1.0


def is_empty(page: bytes) -> bool:
    """Whether a Pull reply's JSON holds no message (see contract.wire)."""
    return page.startswith(EMPTY_PAGE_PREFIX)


@dataclass(frozen=True, slots=True)
class PullQuery:
    """A pull that waits for its page to hold a message."""

    pull: PullRequest

    @property
    def name(self) -> str:
        return self.pull.chat

    def belongs(self, send_time: int) -> bool:
        """Whether a message of that send_time would be on the page."""
        if self.pull.reverse:
            return self.pull.cursor == 0 or send_time <= self.pull.cursor
        return send_time >= self.pull.cursor

    def ready(self, page: bytes) -> bool:
        return not is_empty(page)

    async def read(self, rpc: RpcClient) -> bytes:
        p = self.pull
        return await rpc.pull(p.chat, p.cursor, p.limit, p.reverse)


@dataclass(frozen=True, slots=True)
class ChatsQuery:
    """A chats request that waits for a message newer than `since` in any of the user's chats."""

    chats: ChatsRequest
    since: int

    @property
    def name(self) -> str:
        return self.chats.user  # the member's list is watched under the member's name

    def belongs(self, send_time: int) -> bool:
        return send_time > self.since

    def ready(self, page: bytes) -> bool:
        latest: int = orjson.loads(page)["latest_activity"]
        return latest > self.since

    async def read(self, rpc: RpcClient) -> bytes:
        c = self.chats
        cursor = chats_cursor.encode(c.after) if c.after is not None else ""
        return await rpc.chats(c.user, c.limit, cursor)


Query = PullQuery | ChatsQuery


@dataclass(slots=True)
class _Group:
    """Parked requests that ask the same, answered together."""

    key: Query
    waiters: set[asyncio.Future[bytes]] = field(default_factory=set)
    reading: bool = False
    read_again: bool = False


@dataclass(slots=True)
class _Chat:
    groups: dict[Query, _Group] = field(default_factory=dict)
    watched: bool = False  # the watch was sent on the current stream
    live: bool = False  # ... and confirmed: no hint of this chat is missed now
    hints: int = 0  # hints (and stream losses) seen: tells a pull whether to look again
    linger: asyncio.TimerHandle | None = None


@dataclass(frozen=True, slots=True)
class Mark:
    """A chat's watch as it was before a pull's first read."""

    live: bool
    hints: int


class Waits:
    """This worker's parked requests, by watched name and query, and the stream that wakes them."""

    def __init__(self, rpc: RpcClient) -> None:
        self.rpc = rpc
        self._chats: dict[str, _Chat] = {}
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._outgoing: dict[str, list[str]] = {"watch": [], "unwatch": []}
        self._flushing = False
        self._stream_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()  # page reads and frames being sent
        self._closed = False

    def start(self) -> None:
        self._stream_task = asyncio.create_task(self._keep_stream())

    async def close(self) -> None:
        """Answer every parked request with what it first read, and close the stream."""
        self._closed = True
        for chat in self._chats.values():
            for group in chat.groups.values():
                for waiter in group.waiters:
                    if not waiter.done():
                        waiter.set_result(b"")  # "" means: answer the page already read
        if self._stream_task is not None:
            self._stream_task.cancel()
            with contextlib.suppress(BaseException):
                await self._stream_task
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def mark(self, chat: str) -> Mark:
        """Note the watch of `chat` (or a member's list) before a request's first read."""
        entry = self._chats.get(chat)
        return Mark(entry.live, entry.hints) if entry is not None else Mark(False, 0)

    async def wait(self, key: Query, mark: Mark, page: bytes, seconds: float) -> bytes:
        """A read of `key` once it is ready, or `page` (the first read) after `seconds`."""
        if self._closed:
            return page
        entry = self._chats.get(key.name)
        if entry is None:
            entry = self._chats[key.name] = _Chat()
        if entry.linger is not None:
            entry.linger.cancel()
            entry.linger = None
        group = entry.groups.get(key)
        if group is None:
            group = entry.groups[key] = _Group(key)
        waiter: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        group.waiters.add(waiter)
        metrics.WAITING_PULLS.inc()
        if not entry.watched:
            self._watch(key.name, entry)  # confirmed later; then the group looks again
        elif entry.live and (not mark.live or mark.hints != entry.hints):
            self._read(group)  # a hint may have come before this pull was parked
        try:
            async with asyncio.timeout(seconds):
                return await waiter or page
        except TimeoutError:
            return page
        finally:
            metrics.WAITING_PULLS.dec()
            group.waiters.discard(waiter)
            if not group.waiters and entry.groups.get(key) is group:
                del entry.groups[key]
                if not entry.groups:
                    self._linger(key.name, entry)

    # -- groups ---------------------------------------------------------------

    def _read(self, group: _Group) -> None:
        """Read the group's page (once at a time; a hint meanwhile reads again after)."""
        if group.reading:
            group.read_again = True
            return
        group.reading = True
        task = asyncio.create_task(self._read_group(group))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read_group(self, group: _Group) -> None:
        try:
            while any(not w.done() for w in group.waiters):
                group.read_again = False
                metrics.WAKE_READS.inc()
                try:
                    page = await group.key.read(self.rpc)
                except ApiError as exc:
                    _settle(group, exc)
                    return
                if group.key.ready(page):
                    _settle(group, page)
                    return
                if not group.read_again:
                    return
        finally:
            group.reading = False

    def _read_chat(self, chat: str, send_time: int | None = None) -> None:
        entry = self._chats.get(chat)
        if entry is None:
            return
        for key, group in entry.groups.items():
            if send_time is None or key.belongs(send_time):
                self._read(group)

    # -- the watch stream ------------------------------------------------------

    def _watch(self, chat: str, entry: _Chat) -> None:
        if self._ws is None:
            return  # watched when the stream is open again
        entry.watched = True
        self._send("watch", chat)

    def _linger(self, chat: str, entry: _Chat) -> None:
        loop = asyncio.get_running_loop()
        entry.linger = loop.call_later(LINGER, self._unwatch, chat)

    def _unwatch(self, chat: str) -> None:
        entry = self._chats.get(chat)
        if entry is None or entry.groups:
            return
        if entry.watched and not entry.live:
            # Its confirmation is on the way: unwatch once it is in (see watch.py).
            self._linger(chat, entry)
            return
        del self._chats[chat]
        if entry.watched:
            self._send("unwatch", chat)

    def _send(self, kind: str, chat: str) -> None:
        self._outgoing[kind].append(chat)
        if not self._flushing:
            self._flushing = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flushing = False
        frame = {kind: chats for kind, chats in self._outgoing.items() if chats}
        self._outgoing = {"watch": [], "unwatch": []}
        if frame and self._ws is not None and not self._ws.closed:
            task = asyncio.create_task(self._ws.send_bytes(orjson.dumps(frame)))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _keep_stream(self) -> None:
        backoff = RECONNECT_MIN
        while True:
            try:
                ws, endpoint = await self.rpc.watch()
            except Exception as exc:
                log.debug("watch stream not opened: %s", exc)
            else:
                if await self._serve(ws):
                    backoff = RECONNECT_MIN
                if ws.close_code == aiohttp.WSCloseCode.GOING_AWAY:
                    self.rpc.endpoints.mark_down(endpoint)  # it drains or stops: try another
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, RECONNECT_MAX)

    async def _serve(self, ws: aiohttp.ClientWebSocketResponse) -> bool:
        """Use one stream until it closes; whether it carried anything."""
        self._ws = ws
        metrics.WATCH_STREAM_OPEN.set(1)
        carried = False
        try:
            for chat, entry in self._chats.items():
                entry.watched = True
                self._send("watch", chat)
            async for message in ws:
                if message.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                    break
                carried = True
                self._handle(orjson.loads(message.data))
        except (aiohttp.ClientError, orjson.JSONDecodeError) as exc:
            log.warning("watch stream broke: %s", exc)
        finally:
            self._ws = None
            metrics.WATCH_STREAM_OPEN.set(0)
            with contextlib.suppress(Exception):
                await ws.close()
            self._lost()
        return carried

    def _handle(self, frame: dict[str, Any]) -> None:
        for chat in frame.get("watching", ()):
            entry = self._chats.get(chat)
            if entry is not None and entry.watched:
                entry.live = True
                self._read_chat(chat)  # look once more: a message may predate the watch
        for chat, send_time in frame.get("new", ()):
            entry = self._chats.get(chat)
            if entry is not None:
                entry.hints += 1
                self._read_chat(chat, send_time)

    def _lost(self) -> None:
        """The stream closed: hints may have been missed, so every group reads again."""
        if self._closed:
            return
        for chat, entry in list(self._chats.items()):
            entry.watched = entry.live = False
            entry.hints += 1
            if not entry.groups:
                if entry.linger is not None:
                    entry.linger.cancel()
                del self._chats[chat]
                continue
            self._read_chat(chat)


def _settle(group: _Group, outcome: bytes | Exception) -> None:
    for waiter in group.waiters:
        if waiter.done():
            continue
        if isinstance(outcome, Exception):
            waiter.set_exception(outcome)
        else:
            waiter.set_result(outcome)
