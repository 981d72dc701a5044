"""Chats stored before conversation lists existed get listed when the RPC service starts."""

from __future__ import annotations

import time

import orjson
import redis

from rpc_srv.backfill import DONE, DONE_KEY
from rpc_srv.store import chat_key
from tests.client import request
from tests.stacks import StackFactory


def listed(base: str, user: str) -> list[tuple[str, int, int]]:
    reply = request(base, "GET", f"/api/chats?user={user}")
    assert reply.status == 200, reply.raw
    body = orjson.loads(reply.raw)
    return [(c["chat"], c["last_message"]["send_time"], c["unread"]) for c in body["chats"]]


def test_stored_chats_are_listed_on_start_and_only_once(make_stack: StackFactory) -> None:
    stack = make_stack(None, start=False)
    stack.start_redis()
    client = redis.Redis.from_url(stack.redis_url)
    # As an earlier version wrote them: streams only, no list, no read cursors.
    old = {"ann:bea": (1_700_000_000_000_001, 3), "ann:cid": (1_700_000_000_000_009, 1)}
    for chat, (send_time, count) in old.items():
        for number in range(1, count + 1):
            client.xadd(
                chat_key(chat), {"0": b'"old"'}, id=f"{send_time - count + number}-{number}"
            )
    stack.add_rpc()
    stack.add_http()
    deadline = time.monotonic() + 10
    while client.get(DONE_KEY) != DONE and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.get(DONE_KEY) == DONE
    assert listed(stack.base, "ann") == [
        ("ann:cid", 1_700_000_000_000_009, 1),
        ("ann:bea", 1_700_000_000_000_001, 3),  # nobody has read them: all unread
    ]
    assert listed(stack.base, "bea") == [("ann:bea", 1_700_000_000_000_001, 3)]
    # Once done, a later start lists nothing again: a chat added by hand stays unlisted.
    client.xadd(chat_key("dan:eve"), {"0": b'"x"'}, id="1700000000000100-1")
    stack.rpc.stop()
    stack.rpc.start()
    time.sleep(0.5)  # a walk of three chats would be over by now
    assert listed(stack.base, "dan") == []
    client.close()
