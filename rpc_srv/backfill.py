"""Conversation lists for the chats stored before there were lists.

A store written by a version without conversation lists holds chats that no
member's list names. When the RPC service starts on a store that has not
been through this (no ``pullchat:lists`` key), it walks every chat stream in
the background (SCAN, on every master of a Cluster) and puts each chat in both
members' lists at its newest send_time, with the same idempotent update a send
makes (index.lua: ZADD GT), so it can run beside live sends, on several
replicas at once, and again after an interruption. Then it records that the
store is done. Until then an old chat appears in a list from its next message
on (or when the walk reaches it). Read cursors of those chats start at 0: every
message of theirs counts as unread once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator
from typing import Any, cast

from redis import exceptions as redis_errors

from rpc_srv.store import CHAT_PATTERN, MessageStore, list_key, send_time_of

log = logging.getLogger(__name__)

DONE_KEY = "pullchat:lists"
DONE = b"1"
RETRY_S = 5.0
SCAN_COUNT = 1000


async def list_stored_chats(store: MessageStore) -> int:
    """Put every stored chat in its members' lists, unless the store is done; how many."""
    redis = store.redis
    if await redis.get(DONE_KEY) == DONE:
        return 0
    keys = cast(
        AsyncGenerator[Any, None],
        redis.scan_iter(match=CHAT_PATTERN, count=SCAN_COUNT, _type="stream"),
    )
    listed = 0
    async with contextlib.aclosing(keys):
        async for raw in keys:
            key = raw.decode() if isinstance(raw, bytes) else str(raw)
            newest = await redis.xrevrange(key, count=1)
            if not newest:
                continue
            entry_id = newest[0][0]
            chat = key[len("im:{") : -1]
            send_time = send_time_of(
                entry_id if isinstance(entry_id, bytes) else str(entry_id).encode()
            )
            for member in chat.split(":"):
                await store.list_chat(list_key(member), chat, send_time)
            listed += 1
    await redis.set(DONE_KEY, DONE)
    return listed


async def keep_listing(store: MessageStore) -> None:
    """`list_stored_chats` until it succeeds once (Redis may be down at first)."""
    while True:
        try:
            listed = await list_stored_chats(store)
        except (redis_errors.RedisError, OSError) as exc:
            log.warning("listing stored chats failed (%s); trying again in %g s", exc, RETRY_S)
            await asyncio.sleep(RETRY_S)
            continue
        if listed:
            log.info("listed %d chats stored before conversation lists existed", listed)
        return
