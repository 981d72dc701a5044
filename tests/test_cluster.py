"""Everything the store promises, on a real three-master Redis Cluster."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import orjson
import pytest
from redis.asyncio import RedisCluster

from rpc_srv.store import MessageStore, chat_key, is_cluster_url
from tests.client import http_call
from tests.stacks import StackFactory
from tests.test_store import walk

pytestmark = pytest.mark.slow


def chats(n: int) -> list[str]:
    tag = uuid.uuid4().hex[:8]
    return [f"c{i}-{tag}:d{i}-{tag}" for i in range(n)]


async def test_cluster_is_detected(cluster_url: str, redis_url: str) -> None:
    """REDIS_CLUSTER=auto tells a cluster node from a single server."""
    assert await is_cluster_url(cluster_url, 1.0)
    assert not await is_cluster_url(redis_url, 1.0)


async def test_chats_spread_over_nodes(cstore: MessageStore) -> None:
    """Many chats land on every master, each chat's keys in one slot."""
    assert isinstance(cstore.redis, RedisCluster)
    names = chats(60)
    for chat in names:
        await cstore.send(chat, chat.split(":")[0], "x", "key-1")
    nodes = {cstore.redis.get_node_from_key(chat_key(c)).name for c in names}
    assert len(nodes) == 3
    for chat in names:
        slot = cstore.redis.keyslot(chat_key(chat))
        assert cstore.redis.keyslot(f"idem:{{{chat}}}:key-1") == slot


async def test_concurrent_sends_and_paging(cstore: MessageStore) -> None:
    """Concurrent sends over many chats (pipelined across nodes) keep every guarantee."""
    names = chats(12)
    sends = [cstore.send(c, c.split(":")[0], f"{i}") for i in range(40) for c in names]
    results = await asyncio.gather(*sends)
    assert len(results) == 480
    for chat in names:
        forward = await walk(cstore, chat, 7, False)
        backward = await walk(cstore, chat, 9, True)
        times = [t for t, _ in forward]
        assert len(times) == 40 == len(set(times))
        assert times == sorted(times)
        assert backward == forward[::-1]


async def test_idempotency_and_script_flush(cstore: MessageStore) -> None:
    """Keyed retries store once; scripts are reloaded on every node after SCRIPT FLUSH."""
    chat = chats(1)[0]
    sender = chat.split(":")[0]
    first = await cstore.send(chat, sender, "once", "k")
    await cstore.redis.script_flush()
    again = await asyncio.gather(*(cstore.send(chat, sender, "once", "k") for _ in range(10)))
    assert {r.send_time for r in again} == {first.send_time}
    page = await cstore.pull(chat, 0, 10, False)
    assert [m["text"] for m in page.messages] == ["once"]


async def test_stack_on_a_cluster(
    cluster_url: str, make_stack: StackFactory, record_property: Callable[[str, object], None]
) -> None:
    """The whole service with REDIS_URL naming one cluster node: sends and pages work."""
    s = make_stack(cluster_url)
    names = chats(6)
    for i in range(5):
        for chat in names:
            body = orjson.dumps({"chat": chat, "sender": chat.split(":")[1], "text": str(i)})
            status, reply, _ = http_call(s.base, "POST", "/api/send", body)
            assert status == 200, reply
    for chat in names:
        status, page, _ = http_call(s.base, "GET", f"/api/pull?chat={chat}&limit=3")
        assert status == 200 and page["has_more"] and len(page["messages"]) == 3
    record_property("chats", len(names))


async def test_slot_migration_under_load(
    cluster_url: str, make_stack: StackFactory, record_property: Callable[[str, object], None]
) -> None:
    """Move a busy chat's slot to another master under 16 senders: nothing lost or doubled."""
    from redis.crc import key_slot

    from tests.cluster import migrate_slot
    from tests.load import SendLoad

    s = make_stack(cluster_url, RPC_TIMEOUT="2")
    names = chats(4)
    slot = key_slot(chat_key(names[0]).encode())
    async with SendLoad(s.base, names, clients=16).running() as load:
        await asyncio.sleep(1.0)
        moved = await asyncio.to_thread(migrate_slot, slot, cluster_ports(cluster_url))
        await asyncio.sleep(1.0)
    s.stop()  # nothing is written after this: the store is read whole
    store = await MessageStore.open(cluster_url)
    try:
        stored = {c: {m[1] for m in await walk(store, c, 500, False)} for c in names}
        for c in names:
            times = [t for t, _ in await walk(store, c, 500, False)]
            assert times == sorted(set(times))
    finally:
        await store.close()
    acked = load.acked()
    lost = [o for o in acked if o.text not in stored[o.chat]]
    record_property("slot moved between ports", moved)
    record_property("acked", len(acked))
    record_property("failed", len(load.failed()))
    record_property("lost", len(lost))
    assert len(acked) > 100
    assert not lost, lost[:3]
    assert not load.failed(), load.failed()[:3]


def cluster_ports(url: str) -> list[int]:
    """Every master's port, read from the node named in `url`."""
    import redis as sync_redis

    client = sync_redis.Redis.from_url(url)
    try:
        return sorted({int(entry[2][1]) for entry in client.execute_command("CLUSTER", "SLOTS")})
    finally:
        client.close()
