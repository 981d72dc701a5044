"""The store of the earlier layout: one sorted set per chat, member [send_time, sender, text].

The connection handling, pipelining and error mapping are today's (it is a
MessageStore); the scripts, their arguments and the decoding of a page are
that version's, so what it writes and what it costs per call are that layout's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

import orjson
from redis.asyncio import Redis, RedisCluster

from bench.legacy import script
from rpc_srv.store import MessageStore, SendResult, _settled, chat_key, idempotency_key


def encode_member_tail(sender: str, text: str) -> bytes:
    """The stored member minus its leading ``[send_time,``, which send.lua adds."""
    return orjson.dumps((sender, text))[1:]


def encode_member(send_time: int, sender: str, text: str) -> bytes:
    """The whole member, as send.lua builds it from the tail."""
    return orjson.dumps((send_time, sender, text))


@dataclass(frozen=True, slots=True)
class SortedSetPage:
    """A page as that version's store gave it: the messages decoded into dicts."""

    messages: list[dict[str, Any]]
    has_more: bool
    next_cursor: int

    @property
    def wire(self) -> list[dict[str, Any]]:
        """The messages for the reply, encoded with it (as that version did)."""
        return self.messages

    @property
    def count(self) -> int:
        return len(self.messages)

    @property
    def last_send_time(self) -> int:
        """Of the page's last message, 0 when empty (as a Page says it, for tail_cursor)."""
        return int(self.messages[-1]["send_time"]) if self.messages else 0


class SortedSetStore(MessageStore):
    """Send and pull on the sorted-set layout, exactly as the version before streams did."""

    def _register_scripts(self, redis: Redis | RedisCluster) -> None:
        self._send = redis.register_script(script("send.lua"))
        self._pull = redis.register_script(script("pull.lua"))

    async def check_layout(self) -> None:
        """Nothing to check: this is the layout that a migration moves away from."""

    def send(
        self, chat: str, sender: str, text: str, client_msg_id: str | None = None
    ) -> Coroutine[Any, Any, SendResult]:
        keys = [chat_key(chat)]
        if client_msg_id is not None:
            keys.append(idempotency_key(chat, client_msg_id))
        args = (encode_member_tail(sender, text), self.idempotency_ttl)
        retry_safe = client_msg_id is not None
        return self._sent_zset(self._pipeliner.submit(self._send, keys, args, retry_safe))

    def pull(  # type: ignore[override]
        self, chat: str, cursor: int, limit: int, reverse: bool
    ) -> Coroutine[Any, Any, SortedSetPage]:
        args = (cursor, limit, 1 if reverse else 0)
        submitted = self._pipeliner.submit(self._pull, [chat_key(chat)], args, True)
        return self._page_zset(chat, submitted)

    @staticmethod
    async def _sent_zset(pending: asyncio.Future[Any]) -> SendResult:
        reply = await _settled(pending)
        return SendResult(int(reply[0]), bool(reply[1]), 0)

    @staticmethod
    async def _page_zset(chat: str, pending: asyncio.Future[Any]) -> SortedSetPage:
        rows, next_cursor = await _settled(pending)
        messages = [
            {"chat": chat, "text": text, "sender": sender, "send_time": send_time}
            # One decode for the whole page: the rows are JSON arrays.
            for send_time, sender, text in orjson.loads(b"[" + b",".join(rows) + b"]")
        ]
        return SortedSetPage(messages, next_cursor != 0, int(next_cursor))
