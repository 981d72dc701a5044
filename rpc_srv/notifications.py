"""New-message hints from Redis, fanned out to the watch streams of this process.

Every stored message is announced by send.lua on its chat's shard channel
``new:{<chat>}`` (SPUBLISH, same slot as the chat), whichever replica stored
it. The Hub subscribes (SSUBSCRIBE) to the channels of the chats that some
watch stream (watch.py) asks for, on one pub/sub connection per Redis node
(one in all on a single server), and passes each announcement on to the
streams watching that chat. A member's conversation list is watched the
same way: its channel is ``new:{<member>}`` (index.lua, or send.lua on a
single server, announces a list that changed), and a name without ':' is a
member's list wherever this module says "chat".

A watch is confirmed to its stream only once Redis has acknowledged the
subscription: from then on no announcement of that chat is missed while the
connection lives. If a pub/sub connection fails, or Redis ends a subscription
by itself (a Cluster slot that moved), every stream is closed: its front end
then reads what it waits for again and watches anew, so a lost hint costs a
read, never a message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

from redis import exceptions as redis_errors
from redis.asyncio import ConnectionPool, Redis, RedisCluster
from redis.asyncio.client import PubSub

from rpc_srv import metrics

log = logging.getLogger(__name__)

CHANNEL_PREFIX = "new:"


def channel_of(chat: str) -> str:
    """The shard channel a chat's messages (or a member's list) are announced on.

    Same slot as the chat's key (or the member's list key).
    """
    return f"{CHANNEL_PREFIX}{{{chat}}}"


def chat_of(channel: bytes) -> str:
    return channel.decode()[len(CHANNEL_PREFIX) + 1 : -1]


class Watcher(Protocol):
    """What the Hub tells a watch stream (watch.WatchStream)."""

    def confirmed(self, chat: str) -> None: ...
    def announced(self, chat: str, send_time: int) -> None: ...
    def close(self) -> None: ...


@dataclass(slots=True)
class _Chat:
    """One chat's subscription and its watchers."""

    watchers: set[Watcher] = field(default_factory=set)
    unconfirmed: set[Watcher] = field(default_factory=set)  # told once the subscription is on
    subscribed: bool = False  # the last command sent for it was SSUBSCRIBE
    pending_acks: int = 0  # SSUBSCRIBE/SUNSUBSCRIBE sent, not yet acknowledged

    @property
    def live(self) -> bool:
        return self.subscribed and self.pending_acks == 0


class _Subscriber:
    """One pub/sub connection to one Redis node: commands in order, and a reader."""

    def __init__(self, client: Redis, hub: Hub) -> None:
        self.client = client
        self.pubsub: PubSub = client.pubsub()
        self.hub = hub
        self._commands: list[tuple[str, str]] = []
        self._sender: asyncio.Task[None] | None = None
        self._reader: asyncio.Task[None] | None = None

    def command(self, name: str, channel: str) -> None:
        self._commands.append((name, channel))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send())

    async def _send(self) -> None:
        try:
            while self._commands:
                batch, self._commands = self._commands, []
                for name, channel in batch:
                    if name == "SSUBSCRIBE":
                        await self.pubsub.ssubscribe(channel)
                    else:
                        await self.pubsub.sunsubscribe(channel)
                if self._reader is None:
                    self._reader = asyncio.create_task(self._read())
        except Exception as exc:  # the connection could not be made or broke
            self.hub.fail(exc)

    async def _read(self) -> None:
        try:
            while True:
                message = await self.pubsub.get_message(timeout=None)
                if message is not None:
                    self.hub.received(message)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.hub.fail(exc)

    async def close(self) -> None:
        for task in (self._sender, self._reader):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        with contextlib.suppress(Exception):
            # Typed from redis-py 8.2 on; Any keeps both spellings checked the same.
            await cast(Any, self.pubsub).aclose()
        with contextlib.suppress(Exception):
            await self.client.aclose()


def _pubsub_client(pool: Any) -> Redis:
    """A client of its own for pub/sub, made like `pool`'s connections (address, auth, ...)."""
    kwargs = dict(pool.connection_kwargs)
    kwargs["socket_keepalive"] = True  # a dead peer is noticed even while nothing is said
    return Redis.from_pool(ConnectionPool(connection_class=pool.connection_class, **kwargs))


class Hub:
    """The chats this process watches for its streams, and their subscriptions."""

    def __init__(self, redis: Redis | RedisCluster) -> None:
        self.redis = redis
        self._chats: dict[str, _Chat] = {}
        self._subscribers: dict[str, _Subscriber] = {}  # by node name
        self._closing: set[asyncio.Task[None]] = set()

    def watch(self, watcher: Watcher, chat: str) -> None:
        """Start passing `chat`'s announcements to `watcher`; confirm it once they flow."""
        entry = self._chats.get(chat)
        if entry is None:
            entry = self._chats[chat] = _Chat()
            metrics.WATCHED_CHATS.inc()
        entry.watchers.add(watcher)
        if entry.live:
            watcher.confirmed(chat)
            return
        entry.unconfirmed.add(watcher)
        if not entry.subscribed:
            self._command(entry, chat, "SSUBSCRIBE")

    def unwatch(self, watcher: Watcher, chat: str) -> None:
        entry = self._chats.get(chat)
        if entry is None or watcher not in entry.watchers:
            return
        entry.watchers.discard(watcher)
        entry.unconfirmed.discard(watcher)
        if not entry.watchers and entry.subscribed:
            self._command(entry, chat, "SUNSUBSCRIBE")

    def _command(self, entry: _Chat, chat: str, name: str) -> None:
        entry.subscribed = name == "SSUBSCRIBE"
        entry.pending_acks += 1
        channel = channel_of(chat)
        try:
            subscriber = self._subscriber_for(channel)
        except redis_errors.RedisError as exc:
            self.fail(exc)
            return
        subscriber.command(name, channel)

    def _subscriber_for(self, channel: str) -> _Subscriber:
        pool: Any
        if isinstance(self.redis, RedisCluster):
            node = self.redis.get_node_from_key(channel)
            if node is None:
                raise redis_errors.ClusterError(f"no node serves {channel!r}")
            name, pool = node.name, node
        else:
            name, pool = "", self.redis.connection_pool
        subscriber = self._subscribers.get(name)
        if subscriber is None:
            subscriber = self._subscribers[name] = _Subscriber(_pubsub_client(pool), self)
        return subscriber

    def received(self, message: dict[str, Any]) -> None:
        """One pub/sub message: an announcement, or the acknowledgement of a command."""
        kind = message["type"]
        channel = message["channel"]
        chat = chat_of(channel) if isinstance(channel, bytes) else ""
        entry = self._chats.get(chat)
        if kind == "smessage":
            metrics.NOTIFICATIONS.inc()
            if entry is not None:
                send_time = int(message["data"])
                for watcher in entry.watchers:
                    watcher.announced(chat, send_time)
            return
        if kind not in ("ssubscribe", "sunsubscribe"):
            return
        if entry is None or entry.pending_acks == 0:
            if kind == "sunsubscribe":
                # Redis ended a subscription by itself (its slot moved): start over.
                self.fail(redis_errors.ConnectionError(f"{channel!r} unsubscribed by Redis"))
            return
        entry.pending_acks -= 1
        if entry.pending_acks:
            return
        if entry.live:
            waiting, entry.unconfirmed = entry.unconfirmed, set()
            for watcher in waiting:
                watcher.confirmed(chat)
        elif not entry.watchers:
            del self._chats[chat]
            metrics.WATCHED_CHATS.dec()

    def fail(self, exc: BaseException) -> None:
        """A subscription may have missed announcements: close every stream, start over."""
        if not self._chats and not self._subscribers:
            return
        log.warning("notifications lost (%s): closing every watch stream", exc)
        self.reset()

    def reset(self) -> None:
        """Close every stream and pub/sub connection; the next watch subscribes anew."""
        watchers = {w for entry in self._chats.values() for w in entry.watchers}
        metrics.WATCHED_CHATS.dec(len(self._chats))
        self._chats.clear()
        subscribers, self._subscribers = list(self._subscribers.values()), {}
        for subscriber in subscribers:
            self._later(subscriber.close())
        for watcher in watchers:
            watcher.close()

    def _later(self, closing: Any) -> None:
        task = asyncio.ensure_future(closing)
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        """Close every stream and connection (the server stops)."""
        self.reset()
        while self._closing:
            await asyncio.gather(*self._closing, return_exceptions=True)
