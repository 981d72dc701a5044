"""Messages in Redis: one sorted set per chat, written and read by Lua scripts.

Keys carry the canonical chat as a Redis Cluster hash tag, so every key one
script touches lives in one slot:

- ``im:{alice:bob}``: sorted set, score = send_time (µs), member = the orjson
  array ``[send_time, sender, text]`` (unique because send_time is).
- ``idem:{alice:bob}:<client_msg_id>``: the send_time given to an earlier send
  with that idempotency key; expires after ``idempotency_ttl`` seconds.

The scripts run by EVALSHA, pipelined per event-loop tick (see pipeliner.py),
and are loaded again after a ``SCRIPT FLUSH`` or a restart of Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from dataclasses import dataclass
from importlib.resources import files
from typing import Any, NamedTuple

import orjson
from redis import exceptions as redis_errors
from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
from redis.backoff import NoBackoff
from redis.retry import Retry

from rpc_srv.pipeliner import Pipeliner

# Errors after which Redis may be fine again soon: the caller gets "unavailable".
_TRANSIENT = (redis_errors.ConnectionError, redis_errors.TimeoutError)
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


class SendResult(NamedTuple):
    send_time: int
    duplicate: bool


@dataclass(frozen=True, slots=True)
class Page:
    messages: list[dict[str, Any]]
    has_more: bool
    next_cursor: int


def chat_key(chat: str) -> str:
    """The sorted set of a canonical chat."""
    return f"im:{{{chat}}}"


def idempotency_key(chat: str, client_msg_id: str) -> str:
    """Where a send's idempotency key remembers its send_time (same slot as the chat)."""
    return f"idem:{{{chat}}}:{client_msg_id}"


def encode_member_tail(sender: str, text: str) -> bytes:
    """The stored member minus its leading ``[send_time,``, which send.lua adds."""
    return orjson.dumps((sender, text))[1:]


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


def _lua(name: str) -> str:
    return files("rpc_srv").joinpath("lua", name).read_text(encoding="utf-8")


def _translate(exc: redis_errors.RedisError) -> Exception:
    if isinstance(exc, (*_TRANSIENT, redis_errors.ClusterError)):
        return StoreUnavailable(type(exc).__name__)
    if isinstance(exc, redis_errors.ResponseError) and str(exc).startswith(_UNAVAILABLE_REPLIES):
        return StoreUnavailable(str(exc).split(" ", 1)[0])
    return exc


class MessageStore:
    """Send and pull messages; each is one script call, pipelined with the tick's others."""

    def __init__(
        self, redis: Redis | RedisCluster, idempotency_ttl: int = 86400, pool_size: int = 64
    ) -> None:
        self.redis = redis
        self.idempotency_ttl = idempotency_ttl
        self._send = redis.register_script(_lua("send.lua"))
        self._pull = redis.register_script(_lua("pull.lua"))
        self._pipeliner = Pipeliner(redis, max_in_flight=pool_size)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        pool_size: int = 64,
        timeout: float = 0.8,
        idempotency_ttl: int = 86400,
        cluster: bool = False,
    ) -> MessageStore:
        """A store on a pool of at most `pool_size` connections (per node in a cluster).

        `timeout` bounds connecting, each round trip, and the wait for a free
        connection. redis-py's own retries are off: whether a command may be
        sent again is decided per command here. (Cluster redirections, which
        mean the command did not run, are still followed.)
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
            return cls(client, idempotency_ttl, pool_size)
        pool = BlockingConnectionPool.from_url(url, timeout=timeout, **connection)
        return cls(Redis.from_pool(pool), idempotency_ttl, pool_size)

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        cluster: str = "auto",
        pool_size: int = 64,
        io_timeout: float = 0.8,
        idempotency_ttl: int = 86400,
    ) -> MessageStore:
        """A store for `url`; with cluster "auto", Redis's ``INFO cluster`` decides.

        If Redis cannot be reached to ask, the store assumes a single server.
        """
        is_cluster = cluster == "yes" or (
            cluster == "auto" and await is_cluster_url(url, io_timeout)
        )
        store = cls.from_url(
            url,
            pool_size=pool_size,
            timeout=io_timeout,
            idempotency_ttl=idempotency_ttl,
            cluster=is_cluster,
        )
        if isinstance(store.redis, RedisCluster):
            # Learn the slot map now: a burst of first calls racing to do it
            # can break each other's connections.
            with contextlib.suppress(redis_errors.RedisError):
                await store.redis.initialize()
        return store

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
        """
        keys = [chat_key(chat)]
        if client_msg_id is not None:
            keys.append(idempotency_key(chat, client_msg_id))
        args = (encode_member_tail(sender, text), self.idempotency_ttl)
        retry_safe = client_msg_id is not None
        return self._sent(self._pipeliner.submit(self._send, keys, args, retry_safe))

    def pull(self, chat: str, cursor: int, limit: int, reverse: bool) -> Coroutine[Any, Any, Page]:
        """One page of a canonical chat (see lua/pull.lua for the cursor rules), queued now."""
        args = (cursor, limit, 1 if reverse else 0)
        return self._page(chat, self._pipeliner.submit(self._pull, [chat_key(chat)], args, True))

    @staticmethod
    async def _sent(pending: asyncio.Future[Any]) -> SendResult:
        reply = await _settled(pending)
        return SendResult(int(reply[0]), bool(reply[1]))

    @staticmethod
    async def _page(chat: str, pending: asyncio.Future[Any]) -> Page:
        rows, next_cursor = await _settled(pending)
        messages = [
            {"chat": chat, "text": text, "sender": sender, "send_time": send_time}
            # One decode for the whole page: the rows are JSON arrays.
            for send_time, sender, text in orjson.loads(b"[" + b",".join(rows) + b"]")
        ]
        return Page(messages, next_cursor != 0, int(next_cursor))


async def _settled(pending: asyncio.Future[Any]) -> Any:
    """A queued call's reply, with Redis's errors in the store's terms."""
    try:
        return await pending
    except redis_errors.RedisError as exc:
        raise _translate(exc) from exc
