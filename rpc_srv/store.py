"""Messages in Redis: one stream per chat, written and read by Lua scripts.

Keys carry the canonical chat as a Redis Cluster hash tag, so every key one
script touches lives in one slot:

- ``im:{alice:bob}``: a stream; entry id ``<send_time>-<number>`` (send_time in
  µs, number = the message's place in the chat: 1, 2, ...) and one field: its
  name is the sender's place in the chat (``0`` for alice, ``1`` for bob), its
  value the text as a JSON string, as the wire carries it.
- ``idem:{alice:bob}:<client_msg_id>``: the send_time given to an earlier send
  with that idempotency key; expires after ``idempotency_ttl`` seconds.
- ``read:{alice:bob}``: a hash of the members' read cursors: place -> the
  send_time read up to (a member's own send moves theirs to it).
- ``chats:{alice}``: alice's conversation list, a sorted set: chat -> the
  send_time of its newest message. Updated by every send (ZADD GT).
- ``pullchat:layout``: which layout the store holds (see `check_layout`).

A send is ``lua/send.lua``, run by EVALSHA and loaded again after a ``SCRIPT
FLUSH`` or a restart of Redis. On a single server it updates both members'
lists in the same atomic step. On a Redis Cluster the lists live in their
members' slots, so after the chat's script has stored the message the store
runs ``lua/index.lua`` once per member, before the send is answered; that
update only ever raises a chat's send_time, so a retried send with the same
idempotency key repeats it harmlessly (see `MessageStore.send` for what a
crash between the two writes leaves behind). A pull is one ``XRANGE`` (or ``XREVRANGE``) of
``limit + 1`` entries, atomic on its own: the extra entry tells ``has_more`` and
``next_cursor``. A script could do no more here and costs Redis about twice as
much per page (every entry it reads becomes Lua values). Both go through the
tick's pipeline (see pipeliner.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Awaitable, Coroutine, Iterable
from dataclasses import dataclass
from importlib.resources import files
from typing import Any, NamedTuple, cast

import orjson
from redis import exceptions as redis_errors
from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from rpc_srv.pipeliner import TRANSIENT, Pipeliner

_UNAVAILABLE_REPLIES = (
    "OOM",
    "MISCONF",
    "READONLY",
    "LOADING",
    "BUSY",
    "MASTERDOWN",
    "NOREPLICAS",
    "TRYAGAIN",
    "CLUSTERDOWN",
)


class StoreUnavailable(Exception):
    """Redis could not be reached or refused the command for now."""


class StoreNeedsMigration(Exception):
    """The store still holds chats in an earlier layout: they must be migrated first."""


class ReadState(NamedTuple):
    """A chat as one member sees it (lua/conversation.lua)."""

    read_cursor: int
    unread: int
    last_message_json: bytes | None  # {"chat", "text", "sender", "send_time"}; None if empty
    last_send_time: int  # of that message; 0 if empty


class ChatsPage(NamedTuple):
    """One page of a member's conversation list."""

    entries: list[tuple[str, int]]  # (chat, newest send_time as listed), most recent first
    has_more: bool
    latest_activity: int  # the list's newest send_time (0 when empty)


class SendResult(NamedTuple):
    send_time: int
    duplicate: bool
    number: int  # the message's place in its chat: 1, 2, ... (0 if trimmed since)


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a chat, its messages already encoded as the wire carries them."""

    messages_json: bytes  # a JSON array of {"chat", "text", "sender", "send_time"}
    count: int
    has_more: bool
    next_cursor: int
    last_send_time: int  # of the page's last message; 0 when the page is empty

    @property
    def wire(self) -> orjson.Fragment:
        """The messages, for an ``orjson.dumps`` of the reply: embedded as they are."""
        return orjson.Fragment(self.messages_json)

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The messages decoded (one ``orjson.loads``)."""
        decoded: list[dict[str, Any]] = orjson.loads(self.messages_json)
        return decoded


LAYOUT_KEY = "pullchat:layout"
LAYOUT = b"streams"  # what LAYOUT_KEY holds once the store is known to hold streams only
CHAT_PATTERN = "im:{*"  # every chat key, for SCAN
MIGRATE_COMMAND = "pullchat-migrate"
US_PER_DAY = 86_400 * 1_000_000


def chat_key(chat: str) -> str:
    """The stream of a canonical chat."""
    return f"im:{{{chat}}}"


def read_key(chat: str) -> str:
    """The members' read cursors of a canonical chat (same slot as the chat)."""
    return f"read:{{{chat}}}"


def list_key(member: str) -> str:
    """A member's conversation list (the member's own slot)."""
    return f"chats:{{{member}}}"


def sender_place(chat: str, sender: str) -> bytes:
    """The sender as an entry names it: b"0" for the chat's first member, b"1" for its second."""
    first, second = chat.split(":")
    if sender == first:
        return b"0"
    if sender == second:
        return b"1"
    raise ValueError("the sender must be one of the chat's two members")


def idempotency_key(chat: str, client_msg_id: str) -> str:
    """Where a send's idempotency key remembers its send_time (same slot as the chat)."""
    return f"idem:{{{chat}}}:{client_msg_id}"


def needs_migration_message(found: str) -> str:
    """What the RPC service says when it refuses a store of the sorted-set layout."""
    return (
        f"the store holds chats in the sorted-set layout of an earlier version (e.g. {found}):"
        f" stop the RPC services of that version, run {MIGRATE_COMMAND} with the same"
        " REDIS_URL, then start this one"
    )


async def old_layout_chat(redis: Redis | RedisCluster) -> str | None:
    """A chat key of the sorted-set layout, if any is left (SCAN over every master)."""
    # An async generator, though typed as an iterator: closed here, not left to the GC.
    keys = cast(
        AsyncGenerator[Any, None], redis.scan_iter(match=CHAT_PATTERN, count=1000, _type="zset")
    )
    async with contextlib.aclosing(keys):
        async for key in keys:
            return key.decode() if isinstance(key, bytes) else str(key)
    return None


async def check_layout(redis: Redis | RedisCluster) -> None:
    """Raise StoreNeedsMigration unless the store holds chats as streams only.

    Once known, that is kept in LAYOUT_KEY, so only the first start on a store
    (or after a FLUSHALL) scans its keys; on a store of the earlier layout the
    scan stops at the first sorted set it finds.
    """
    marker = await redis.get(LAYOUT_KEY)
    if marker == LAYOUT:
        return
    if marker is not None:
        raise StoreNeedsMigration(
            f"the store holds an unknown layout {marker!r} (from a later version?);"
            f" this version reads {LAYOUT.decode()!r}"
        )
    found = await old_layout_chat(redis)
    if found is not None:
        raise StoreNeedsMigration(needs_migration_message(found))
    await redis.set(LAYOUT_KEY, LAYOUT, nx=True)


async def is_cluster_url(url: str, io_timeout: float) -> bool:
    """Whether the Redis at `url` runs in cluster mode (False if it cannot be asked)."""
    probe = Redis.from_url(url, socket_timeout=io_timeout, socket_connect_timeout=io_timeout)
    try:
        info = await probe.info("cluster")
    except redis_errors.RedisError:
        return False
    finally:
        await probe.aclose()
    return bool(info.get("cluster_enabled"))


def lua(name: str) -> str:
    """The text of one of the store's scripts, ``rpc_srv/lua/<name>``."""
    return files("rpc_srv").joinpath("lua", name).read_text(encoding="utf-8")


# Refusals that redis-py raises as classes of their own, their reply's first word removed.
_UNAVAILABLE_ERRORS = {
    redis_errors.OutOfMemoryError: "OOM",
    redis_errors.ReadOnlyError: "READONLY",
    redis_errors.TryAgainError: "TRYAGAIN",
}


def _translate(exc: redis_errors.RedisError) -> Exception:
    if isinstance(exc, (*TRANSIENT, redis_errors.ClusterError)):
        return StoreUnavailable(type(exc).__name__)
    for refusal, word in _UNAVAILABLE_ERRORS.items():
        if isinstance(exc, refusal):
            return StoreUnavailable(word)
    if isinstance(exc, redis_errors.ResponseError) and str(exc).startswith(_UNAVAILABLE_REPLIES):
        return StoreUnavailable(str(exc).split(" ", 1)[0])
    return exc


class MessageStore:
    """Send (one script call) and pull (one XRANGE) messages, pipelined with the tick's others."""

    def __init__(
        self,
        redis: Redis | RedisCluster,
        idempotency_ttl: int = 86400,
        pool_size: int = 64,
        retention_days: int = 0,
    ) -> None:
        self.redis = redis
        self.idempotency_ttl = idempotency_ttl
        # Messages older than this are trimmed (on the chat's next send) and never
        # returned; 0 keeps everything.
        self.retention_us = retention_days * US_PER_DAY
        self._register_scripts(redis)
        self._pipeliner = Pipeliner(redis, max_in_flight=pool_size)
        self._cluster = isinstance(redis, RedisCluster)

    def _register_scripts(self, redis: Redis | RedisCluster) -> None:
        """The store's scripts (another layout's store registers its own)."""
        self._send = redis.register_script(lua("send.lua"))
        self._index = redis.register_script(lua("index.lua"))
        self._conversation = redis.register_script(lua("conversation.lua"))
        self._chats = redis.register_script(lua("chats.lua"))

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        pool_size: int = 64,
        timeout: float = 0.8,
        idempotency_ttl: int = 86400,
        retention_days: int = 0,
        cluster: bool = False,
    ) -> MessageStore:
        """A store on a pool of at most `pool_size` connections (per node in a cluster).

        `timeout` bounds connecting, each round trip, and the wait for a free
        connection. redis-py's own retries are off: whether a command may be
        sent again is decided per command here. (Cluster redirections, which
        mean the command did not run, are still followed.) Nothing is checked:
        `open` also checks the store's layout.
        """
        connection = {
            "max_connections": pool_size,
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            "retry": Retry(NoBackoff(), 0),
        }
        if cluster:
            # On MOVED, patch that slot only: rebuilding the whole map closes
            # connections that other calls are using.
            client = RedisCluster.from_url(url, reinitialize_steps=0, **connection)
            return cls(client, idempotency_ttl, pool_size, retention_days)
        pool = BlockingConnectionPool.from_url(url, timeout=timeout, **connection)
        return cls(Redis.from_pool(pool), idempotency_ttl, pool_size, retention_days)

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        cluster: str = "auto",
        pool_size: int = 64,
        io_timeout: float = 0.8,
        idempotency_ttl: int = 86400,
        retention_days: int = 0,
    ) -> MessageStore:
        """A store for `url`; with cluster "auto", Redis's ``INFO cluster`` decides.

        Raises StoreNeedsMigration, naming the command that migrates it, when
        the store still holds chats of the earlier sorted-set layout. If Redis
        cannot be reached, the store assumes a single server and the layout is
        not checked (a chat of the earlier layout then fails with WRONGTYPE).
        """
        is_cluster = cluster == "yes" or (
            cluster == "auto" and await is_cluster_url(url, io_timeout)
        )
        store = cls.from_url(
            url,
            pool_size=pool_size,
            timeout=io_timeout,
            idempotency_ttl=idempotency_ttl,
            retention_days=retention_days,
            cluster=is_cluster,
        )
        try:
            if isinstance(store.redis, RedisCluster):
                # Learn the slot map now: a burst of first calls racing to do it
                # can break each other's connections.
                with contextlib.suppress(redis_errors.RedisError):
                    await store.redis.initialize()
            with contextlib.suppress(redis_errors.RedisError):
                await store.check_layout()
        except BaseException:
            await store.close()
            raise
        return store

    async def check_layout(self) -> None:
        """Raise StoreNeedsMigration if the store still holds chats of an earlier layout."""
        await check_layout(self.redis)

    async def close(self) -> None:
        """Close the pool once the calls in flight are settled (none is retried on a new one)."""
        await self._pipeliner.wait_idle()
        await self.redis.aclose()

    async def ping(self) -> None:
        try:
            await self.redis.ping()
        except redis_errors.RedisError as exc:
            raise _translate(exc) from exc

    def send(
        self, chat: str, sender: str, text: str, client_msg_id: str | None = None
    ) -> Coroutine[Any, Any, SendResult]:
        """Store a message in a canonical chat; await the result for its send_time.

        The script call is queued before this returns (``Pipeliner.submit``). With a
        `client_msg_id`, a send already stored under that id returns the first
        send_time and stores nothing, so such a send is safe to retry.

        Both members' conversation lists are up to date when the result is: on
        a single server the script updates them; on a Cluster `_listed` does,
        after the script. If that second write fails (or the service dies
        between the two), the send fails with StoreUnavailable although the
        message is stored: until a retry with the same `client_msg_id` (which
        repeats the update) or the chat's next send, the chat is listed at its
        earlier send_time, or not at all if this was its first message, and a
        waiting chats request is not woken by it. The message itself, its
        pull, the read cursors and unread counts (all in the chat's slot) are
        right at once.
        """
        keys = [chat_key(chat), read_key(chat)]
        lists = 0 if self._cluster else 2
        if lists:
            keys += [list_key(member) for member in chat.split(":")]
        if client_msg_id is not None:
            keys.append(idempotency_key(chat, client_msg_id))
        args = (
            sender_place(chat, sender),
            orjson.dumps(text),
            self.idempotency_ttl,
            self.retention_us,
            lists,
        )
        retry_safe = client_msg_id is not None
        sent = self._sent(self._pipeliner.submit(self._send, keys, args, retry_safe))
        return self._listed(chat, sent) if self._cluster else sent

    async def _listed(self, chat: str, sent: Awaitable[SendResult]) -> SendResult:
        """The send's result once both members' lists have it (on a Cluster)."""
        result = await sent
        updates = [self.list_chat(list_key(m), chat, result.send_time) for m in chat.split(":")]
        for outcome in await asyncio.gather(*updates, return_exceptions=True):
            if isinstance(outcome, BaseException):
                raise outcome
        return result

    def list_chat(self, key: str, chat: str, send_time: int) -> Coroutine[Any, Any, Any]:
        """Raise `chat` to `send_time` in the list `key` (never lower it), queued now."""
        return _settled(self._pipeliner.submit(self._index, [key], (chat, send_time), True))

    def chats(self, member: str, limit: int, after: tuple[int, str] | None) -> ChatsPageCall:
        """A page of `member`'s conversation list, queued now; after (send_time, chat) if given."""
        args: tuple[Any, ...] = (limit,) if after is None else (limit, *after)
        listed = self._pipeliner.submit(self._chats, [list_key(member)], args, True)
        return self._chats_page(limit, listed)

    @staticmethod
    async def _chats_page(limit: int, pending: asyncio.Future[Any]) -> ChatsPage:
        reply = await _settled(pending)
        latest = int(float(reply[0]))
        rows = [(_text(reply[i]), int(float(reply[i + 1]))) for i in range(1, len(reply) - 1, 2)]
        return ChatsPage(rows[:limit], len(rows) > limit, latest)

    def read_state(
        self, chat: str, member: str, read_up_to: int | None = None
    ) -> Coroutine[Any, Any, ReadState]:
        """`member`'s view of a canonical chat, queued now; with `read_up_to`, a read receipt.

        The read cursor moves to `read_up_to` (never back, never past the
        chat's newest message); the state returned is after the move.
        """
        args: tuple[Any, ...] = (sender_place(chat, member),)
        if read_up_to is not None:
            args += (read_up_to,)
        keys = [chat_key(chat), read_key(chat)]
        # A receipt only ever moves the cursor forward: running it twice is running it once.
        pending = self._pipeliner.submit(self._conversation, keys, args, retry_safe=True)
        return self._read_state(chat, pending)

    @staticmethod
    async def _read_state(chat: str, pending: asyncio.Future[Any]) -> ReadState:
        reply = await _settled(pending)
        cursor, unread = int(reply[0]), int(reply[1])
        if len(reply) < 5:
            return ReadState(cursor, unread, None, 0)
        entry = (reply[2], (reply[3], reply[4]))
        return ReadState(cursor, unread, page_json(chat, (entry,))[1:-1], send_time_of(reply[2]))

    def pull(self, chat: str, cursor: int, limit: int, reverse: bool) -> Coroutine[Any, Any, Page]:
        """One page of a canonical chat, queued now.

        Oldest first from `cursor` (send_time >= cursor), or with `reverse`
        newest first from it (send_time <= cursor; 0 is "from the newest"). An
        id without its number part stands for all of that send_time in XRANGE
        and XREVRANGE alike. With a retention, entries older than it that no
        send has trimmed yet are never returned (by this host's clock).
        """
        key = chat_key(chat)
        oldest = self.oldest_kept()
        if reverse:
            command = ("XREVRANGE", key, cursor or "+", oldest or "-", "COUNT", limit + 1)
        else:
            command = ("XRANGE", key, max(cursor, oldest), "+", "COUNT", limit + 1)
        return self._page(chat, limit, self._pipeliner.submit_command(command, key, True))

    def oldest_kept(self) -> int:
        """The oldest send_time a pull returns (0 without a retention)."""
        if not self.retention_us:
            return 0
        return max(0, time.time_ns() // 1000 - self.retention_us)

    @staticmethod
    async def _sent(pending: asyncio.Future[Any]) -> SendResult:
        send_time, duplicate, number = await _settled(pending)
        return SendResult(send_time, bool(duplicate), number)

    @staticmethod
    async def _page(chat: str, limit: int, pending: asyncio.Future[Any]) -> Page:
        rows = as_read_raw(await _settled(pending))
        has_more = len(rows) > limit
        page = rows[:limit] if has_more else rows
        messages = page_json(chat, page)
        next_cursor = send_time_of(rows[limit][0]) if has_more else 0
        last_send_time = send_time_of(page[-1][0]) if page else 0
        return Page(messages, len(page), has_more, next_cursor, last_send_time)


ChatsPageCall = Coroutine[Any, Any, ChatsPage]


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def send_time_of(entry_id: bytes) -> int:
    """The send_time part of an entry id ``<send_time>-<number>``."""
    return int(entry_id.partition(b"-")[0])


def as_read_raw(rows: list[Any]) -> list[Any]:
    """Stream entries as a single server's pipeline reads them: ``[id, [place, text]]``.

    redis-py's cluster client parses them into ``(id, {place: text})``: undone here.
    """
    if rows and isinstance(rows[0][1], dict):
        return [(entry_id, next(iter(fields.items()))) for entry_id, fields in rows]
    return rows


def page_json(chat: str, entries: Iterable[Any]) -> bytes:
    """The wire's JSON array of a page from its stream entries ``(id, (place, text))``.

    Only bytes are joined: the texts are stored as JSON already, and the chat
    and its two senders are encoded once per page.
    """
    first, second = chat.split(":")
    head = b'{"chat":' + orjson.dumps(chat) + b',"text":'
    tails = {
        b"0": b',"sender":' + orjson.dumps(first) + b',"send_time":',
        b"1": b',"sender":' + orjson.dumps(second) + b',"send_time":',
    }
    messages = [
        b"%b%b%b%b}" % (head, text, tails[place], entry_id.partition(b"-")[0])
        for entry_id, (place, text) in entries
    ]
    return b"[" + b",".join(messages) + b"]"


async def _settled(pending: asyncio.Future[Any]) -> Any:
    """A queued call's reply, with Redis's errors in the store's terms."""
    try:
        return await pending
    except redis_errors.RedisError as exc:
        raise _translate(exc) from exc
