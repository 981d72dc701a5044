"""The store and its Lua scripts against a real Redis server."""

from __future__ import annotations

import asyncio
import random
import uuid

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rpc_srv.store import MessageStore, chat_key


async def walk(store: MessageStore, chat: str, limit: int, reverse: bool) -> list[tuple[int, str]]:
    """Every message of a chat, page by page with next_cursor."""
    seen: list[tuple[int, str]] = []
    cursor = 0
    while True:
        page = await store.pull(chat, cursor, limit, reverse)
        assert len(page.messages) <= limit
        seen += [(m["send_time"], m["text"]) for m in page.messages]
        if not page.has_more:
            assert page.next_cursor == 0
            return seen
        assert page.next_cursor > 0
        cursor = page.next_cursor


async def test_send_then_pull(store: MessageStore, chat: str) -> None:
    """A sent message comes back with its send_time, sender and exact text."""
    first = chat.split(":")[0]
    text = 'hé "quoted" \\ \n \x00 😀 [1,2]'
    result = await store.send(chat, first, text)
    assert not result.duplicate
    page = await store.pull(chat, 0, 10, False)
    assert page.messages == [
        {"chat": chat, "text": text, "sender": first, "send_time": result.send_time}
    ]
    assert (page.has_more, page.next_cursor) == (False, 0)


async def test_send_time_is_store_clock_in_microseconds(store: MessageStore, chat: str) -> None:
    """send_time is the Redis clock in µs when the chat has nothing newer."""
    seconds, micros = await store.redis.time()
    result = await store.send(chat, chat.split(":")[0], "x")
    assert 0 <= result.send_time - (seconds * 1_000_000 + micros) < 5_000_000


async def test_send_time_never_goes_back(store: MessageStore, chat: str) -> None:
    """A chat whose newest message is ahead of the clock continues from it + 1."""
    future = 2**52
    await store.redis.xadd(chat_key(chat), {"0": '"x"'}, id=f"{future}-7")
    result = await store.send(chat, chat.split(":")[0], "next")
    assert (result.send_time, result.number) == (future + 1, 8)


async def test_messages_are_numbered_in_order(store: MessageStore, chat: str) -> None:
    """Each message gets the chat's next number, from 1; a keyed retry gets its first one."""
    sender = chat.split(":")[0]
    results = await asyncio.gather(*(store.send(chat, sender, f"m{i}") for i in range(50)))
    assert sorted(r.number for r in results) == list(range(1, 51))
    by_time = sorted(results, key=lambda r: r.send_time)
    assert [r.number for r in by_time] == list(range(1, 51))
    keyed = await store.send(chat, sender, "keyed", "k")
    again = await store.send(chat, sender, "keyed", "k")
    assert (keyed.number, again.number, again.duplicate) == (51, 51, True)


async def test_send_continues_after_the_stream_was_emptied(store: MessageStore, chat: str) -> None:
    """A stream emptied by hand (XTRIM) still gives a later send_time and the next number."""
    sender = chat.split(":")[0]
    first = await store.send(chat, sender, "one")
    await store.redis.xtrim(chat_key(chat), maxlen=0)
    assert await store.redis.exists(chat_key(chat)) == 1
    second = await store.send(chat, sender, "two")
    assert second.send_time > first.send_time
    assert second.number == first.number + 1


async def test_concurrent_sends_get_distinct_increasing_times(
    store: MessageStore, chat: str
) -> None:
    """200 concurrent sends to one chat: 200 distinct send_times, stored in send order."""
    sender = chat.split(":")[0]
    results = await asyncio.gather(*(store.send(chat, sender, f"m{i}") for i in range(200)))
    times = [r.send_time for r in results]
    assert len(set(times)) == 200
    stored = await walk(store, chat, 1000, False)
    assert [t for t, _ in stored] == sorted(times)
    assert len(stored) == 200


async def test_two_clients_share_one_order(redis_url: str, chat: str) -> None:
    """Two stores (as two RPC replicas) sending at once still give unique, ordered times."""
    a = MessageStore.from_url(redis_url)
    b = MessageStore.from_url(redis_url)
    try:
        sender = chat.split(":")[0]
        sends = [(a if i % 2 else b).send(chat, sender, f"{i}") for i in range(300)]
        times = [r.send_time for r in await asyncio.gather(*sends)]
        assert len(set(times)) == 300
        assert len(await walk(a, chat, 77, True)) == 300
    finally:
        await a.close()
        await b.close()


async def test_pull_cursor_bounds(store: MessageStore, chat: str) -> None:
    """Forward pages hold send_time >= cursor, reverse pages <= cursor, 0 reverse = newest."""
    sender = chat.split(":")[0]
    times = [(await store.send(chat, sender, str(i))).send_time for i in range(5)]
    forward = await store.pull(chat, times[2], 2, False)
    assert [m["send_time"] for m in forward.messages] == times[2:4]
    assert (forward.has_more, forward.next_cursor) == (True, times[4])
    backward = await store.pull(chat, times[2], 2, True)
    assert [m["send_time"] for m in backward.messages] == [times[2], times[1]]
    assert (backward.has_more, backward.next_cursor) == (True, times[0])
    newest = await store.pull(chat, 0, 1, True)
    assert [m["send_time"] for m in newest.messages] == [times[4]]
    last = await store.pull(chat, times[4], 5, False)
    assert (len(last.messages), last.has_more, last.next_cursor) == (1, False, 0)
    beyond = await store.pull(chat, 2**63 - 1, 5, False)
    assert (beyond.messages, beyond.has_more) == ([], False)


async def test_empty_chat(store: MessageStore, chat: str) -> None:
    """A chat with no messages gives an empty last page in both directions."""
    for reverse in (False, True):
        page = await store.pull(chat, 0, 10, reverse)
        assert (page.messages, page.has_more, page.next_cursor) == ([], False, 0)


async def test_evalsha_survives_script_flush(store: MessageStore, chat: str) -> None:
    """After SCRIPT FLUSH the scripts are loaded again and calls still succeed."""
    sender = chat.split(":")[0]
    await store.send(chat, sender, "before")
    await store.redis.script_flush()
    await store.send(chat, sender, "after")
    await store.redis.script_flush()
    page = await store.pull(chat, 0, 10, False)
    assert [m["text"] for m in page.messages] == ["before", "after"]


async def test_idempotent_send(store: MessageStore, chat: str) -> None:
    """A send repeated with its client_msg_id returns the first send_time and stores nothing."""
    sender = chat.split(":")[0]
    first = await store.send(chat, sender, "once", "key-1")
    again = await store.send(chat, sender, "once", "key-1")
    other = await store.send(chat, sender, "twice", "key-2")
    assert (again.send_time, again.duplicate, first.duplicate) == (first.send_time, True, False)
    assert other.send_time > first.send_time
    assert len((await store.pull(chat, 0, 10, False)).messages) == 2
    ttl = await store.redis.ttl(f"idem:{{{chat}}}:key-1")
    assert 0 < ttl <= store.idempotency_ttl


async def test_racing_idempotent_sends_store_once(store: MessageStore, chat: str) -> None:
    """50 concurrent sends with one key: one message, one send_time for all."""
    sender = chat.split(":")[0]
    results = await asyncio.gather(*(store.send(chat, sender, "x", "same") for _ in range(50)))
    assert len({r.send_time for r in results}) == 1
    assert sum(not r.duplicate for r in results) == 1
    assert len((await store.pull(chat, 0, 100, False)).messages) == 1


async def test_keys_share_a_cluster_slot(store: MessageStore, chat: str) -> None:
    """The chat's set and its idempotency keys hash to one Redis Cluster slot."""
    from redis.crc import key_slot

    slot = key_slot(chat_key(chat).encode())
    assert key_slot(f"idem:{{{chat}}}:k".encode()) == slot


async def test_hiredis_parser_in_use(store: MessageStore) -> None:
    """The pool's connections parse replies with hiredis."""
    from redis.asyncio.connection import _AsyncHiredisParser

    connection = await store.redis.connection_pool.get_connection()
    try:
        assert isinstance(connection._parser, _AsyncHiredisParser)
    finally:
        await store.redis.connection_pool.release(connection)


async def test_store_down_is_unavailable() -> None:
    """A Redis that refuses connections gives StoreUnavailable quickly, not a hang."""
    from launcher.procs import free_port
    from rpc_srv.store import StoreUnavailable

    store = MessageStore.from_url(f"redis://127.0.0.1:{free_port()}/0", timeout=0.5)
    try:
        async with asyncio.timeout(3):
            with pytest.raises(StoreUnavailable):
                await store.send("a:b", "a", "x")
            with pytest.raises(StoreUnavailable):
                await store.pull("a:b", 0, 10, False)
    finally:
        await store.close()


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    preload=st.integers(0, 40),
    page_sizes=st.lists(st.integers(1, 12), min_size=1, max_size=6),
    writers=st.integers(0, 3),
    reverse=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_paging_while_sending_sees_each_message_once(
    redis_url: str, preload: int, page_sizes: list[int], writers: int, reverse: bool, seed: int
) -> None:
    """Walking pages while other tasks send returns every message once and in order."""

    async def scenario() -> None:
        store = MessageStore.from_url(redis_url)
        chat = f"p{uuid.uuid4().hex[:10]}:q"
        rng = random.Random(seed)
        try:
            for i in range(preload):
                await store.send(chat, "q", f"pre{i}")
            stop = asyncio.Event()

            async def writer(n: int) -> None:
                i = 0
                while not stop.is_set():
                    await store.send(chat, "q", f"w{n}-{i}")
                    i += 1
                    await asyncio.sleep(rng.random() / 500)

            tasks = [asyncio.create_task(writer(n)) for n in range(writers)]
            seen: list[int] = []
            cursor, step = 0, 0
            while True:
                limit = page_sizes[step % len(page_sizes)]
                step += 1
                page = await store.pull(chat, cursor, limit, reverse)
                seen += [m["send_time"] for m in page.messages]
                if not page.has_more or step > 500:
                    break
                cursor = page.next_cursor
                await asyncio.sleep(0)
            stop.set()
            await asyncio.gather(*tasks)

            assert len(seen) == len(set(seen)), "a message came twice"
            assert seen == sorted(seen, reverse=reverse), "out of order"
            everything = [m["send_time"] for m in (await store.pull(chat, 0, 1000, False)).messages]
            if reverse:
                # Newest first from the newest at the start: every message up to then.
                assert set(everything[: len(seen)]) >= set(seen)
                assert seen == sorted(everything[: len(seen)], reverse=True)
            else:
                # Oldest first: everything that existed when the walk ended.
                assert seen == everything[: len(seen)]
                assert len(seen) >= preload
        finally:
            await store.close()

    asyncio.run(scenario())


async def test_entries_hold_the_senders_place_and_the_text(store: MessageStore, chat: str) -> None:
    """Each entry is <send_time>-<number> -> {sender's place: text as JSON}, as sent."""
    first, second = chat.split(":")
    texts = ["t", 'a "quoted" / \\ é\n']
    sent = [await store.send(chat, second, texts[0]), await store.send(chat, first, texts[1])]
    raw = await store.redis.xrange(chat_key(chat))
    assert raw == [
        (f"{sent[0].send_time}-1".encode(), {b"1": orjson.dumps(texts[0])}),
        (f"{sent[1].send_time}-2".encode(), {b"0": orjson.dumps(texts[1])}),
    ]


async def test_a_sender_outside_the_chat_is_refused(store: MessageStore, chat: str) -> None:
    """The store refuses, before queueing anything, a sender who is not a member."""
    with pytest.raises(ValueError, match="members"):
        store.send(chat, "mallory", "x")
    assert await store.redis.exists(chat_key(chat)) == 0


async def test_page_is_wire_json(store: MessageStore, chat: str) -> None:
    """A page comes as the wire's JSON: its count, its last send_time, embeddable as is."""
    sender = '"odd\\ / \u00e9 😀'
    chat = f"{sender}:{chat.split(':')[1]}"
    texts = ["", "\x00\x1f\x7f", "</script>", "x" * 70_000, "é😀\u2028"]
    sent = [await store.send(chat, sender, t) for t in texts]
    page = await store.pull(chat, 0, 4, False)
    expected = [
        {"chat": chat, "text": t, "sender": sender, "send_time": r.send_time}
        for t, r in zip(texts, sent, strict=True)
    ]
    assert page.messages == expected[:4]
    assert (page.count, page.last_send_time) == (4, sent[3].send_time)
    assert (page.has_more, page.next_cursor) == (True, sent[4].send_time)
    assert orjson.loads(orjson.dumps({"messages": page.wire})) == {"messages": expected[:4]}
    empty = await store.pull(chat, sent[4].send_time + 1, 4, False)
    assert (empty.messages_json, empty.count, empty.last_send_time) == (b"[]", 0, 0)


DAY_US = 86_400 * 1_000_000


async def old_entries(store: MessageStore, chat: str, n: int, days_ago: float) -> list[int]:
    """Put `n` entries of `days_ago` days back into a chat's stream, straight into Redis."""
    now = (await store.redis.time())[0] * 1_000_000
    first = now - int(days_ago * DAY_US)
    times = [first + k for k in range(n)]
    pipe = store.redis.pipeline(transaction=False)
    for k, t in enumerate(times):
        pipe.xadd(chat_key(chat), {"0": orjson.dumps(f"old{k}")}, id=f"{t}-{k + 1}")
    await pipe.execute()
    return times


async def test_retention_hides_and_trims_old_messages(redis_url: str, chat: str) -> None:
    """With a retention, older messages are never returned and a send trims them by id."""
    store = MessageStore.from_url(redis_url, retention_days=1)
    try:
        old = await old_entries(store, chat, 500, days_ago=3)
        assert (await store.pull(chat, 0, 10, False)).messages == []
        assert (await store.pull(chat, old[10], 10, False)).messages == []
        assert (await store.pull(chat, 0, 10, True)).messages == []
        assert (await store.pull(chat, old[-1], 10, True)).messages == []
        sent = await store.send(chat, chat.split(":")[0], "new")
        assert sent.number == 501, "numbers go on across trimming"
        # Whole stream nodes of old entries go (XADD MINID ~): at most the one
        # node that the new entry shares may keep some.
        assert await store.redis.xlen(chat_key(chat)) <= 101
        for reverse in (False, True):
            page = await store.pull(chat, 0, 10, reverse)
            assert [m["text"] for m in page.messages] == ["new"]
            assert (page.has_more, page.next_cursor) == (False, 0)
    finally:
        await store.close()


async def test_recent_messages_are_kept_and_paged(redis_url: str, chat: str) -> None:
    """Within the retention everything stays, and paging stops where it begins."""
    store = MessageStore.from_url(redis_url, retention_days=2)
    try:
        await old_entries(store, chat, 5, days_ago=3)
        recent = await old_entries(store, chat, 5, days_ago=1)
        sender = chat.split(":")[0]
        times = recent + [(await store.send(chat, sender, str(i))).send_time for i in range(5)]
        assert [t for t, _ in await walk(store, chat, 3, False)] == times
        assert [t for t, _ in await walk(store, chat, 3, True)] == times[::-1]
    finally:
        await store.close()


async def test_no_retention_keeps_everything(store: MessageStore, chat: str) -> None:
    """RETENTION_DAYS=0 (the default) trims nothing, however old."""
    old = await old_entries(store, chat, 300, days_ago=3650)
    await store.send(chat, chat.split(":")[0], "new")
    assert await store.redis.xlen(chat_key(chat)) == 301
    assert [t for t, _ in await walk(store, chat, 100, False)][:300] == old


async def test_pipelined_calls_survive_script_flush(store: MessageStore, chat: str) -> None:
    """Calls pipelined in one tick after SCRIPT FLUSH are loaded again and all succeed."""
    sender = chat.split(":")[0]
    await store.redis.script_flush()
    results = await asyncio.gather(*(store.send(chat, sender, f"{i}") for i in range(30)))
    assert len({r.send_time for r in results}) == 30
    await store.redis.script_flush()
    pages = await asyncio.gather(*(store.pull(chat, 0, 100, False) for _ in range(10)))
    assert all(len(p.messages) == 30 for p in pages)
