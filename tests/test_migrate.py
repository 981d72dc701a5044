"""`pullchat-migrate` on stores written by the sorted-set version, against real Redis servers."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis as sync_redis
from redis import exceptions as redis_errors
from redis.asyncio import Redis, RedisCluster
from redis.crc import key_slot

from bench.legacy.store import SortedSetStore
from launcher.procs import free_port, redis_child
from rpc_srv import migrate
from rpc_srv.store import LAYOUT, LAYOUT_KEY, MessageStore, StoreNeedsMigration, chat_key
from tests.client import http_call
from tests.cluster import LocalCluster, migrate_slot
from tests.old_layout import OldMessage, fill
from tests.stacks import StackFactory

COMMAND = str(Path(sys.executable).parent / "pullchat-migrate")
Row = tuple[int, str, str]


@pytest.fixture
def fresh_url(tmp_path: Path) -> Iterator[str]:
    """A Redis of its own: the layout marker and the old chats concern the whole server."""
    port = free_port()
    child = redis_child(port, tmp_path / "redis", log=tmp_path / "redis.log").start()
    yield child.url
    child.stop()


@pytest.fixture(scope="module")
def own_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A three-master cluster of its own, so the shared one never holds the old layout."""
    cluster = LocalCluster(tmp_path_factory.mktemp("migrate-cluster")).start()
    yield cluster
    cluster.stop()


@pytest.fixture
def cluster_url(own_cluster: LocalCluster) -> str:
    for port in own_cluster.ports:
        client = sync_redis.Redis(port=port)
        try:
            client.flushall()
        finally:
            client.close()
    return own_cluster.url


@dataclass(frozen=True)
class Done:
    returncode: int
    stdout: str
    stderr: str


async def run(argv: list[str], env: dict[str, str] | None = None, seconds: float = 120) -> Done:
    """Run a command to its end (within `seconds`), its output captured."""
    proc = await asyncio.create_subprocess_exec(
        *argv, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), seconds)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode is not None
    return Done(proc.returncode, out.decode(), err.decode())


async def run_command(url: str, *args: str) -> Done:
    """`pullchat-migrate --redis-url url ...`, run to its end."""
    return await run([COMMAND, "--redis-url", url, *args])


async def stored(url: str, chats: list[str], cluster: bool = False) -> dict[str, list[Row]]:
    """Every message of each chat, walked page by page with today's store."""
    store = MessageStore.from_url(url, cluster=cluster)
    found: dict[str, list[Row]] = {}
    try:
        for chat in chats:
            rows: list[Row] = []
            cursor = 0
            while True:
                page = await store.pull(chat, cursor, 97, False)
                rows += [(m["send_time"], m["sender"], m["text"]) for m in page.messages]
                assert all(m["chat"] == chat for m in page.messages)
                if not page.has_more:
                    break
                cursor = page.next_cursor
            found[chat] = rows
    finally:
        await store.close()
    return found


def rows_of(sent: dict[str, list[OldMessage]]) -> dict[str, list[Row]]:
    return {c: [(m.send_time, m.sender, m.text) for m in ms] for c, ms in sent.items()}


async def entry_numbers(client: Redis | RedisCluster, chat: str) -> list[int]:
    return [int(i.split(b"-")[1]) for i, _ in await client.xrange(chat_key(chat))]


async def dump(url: str) -> dict[bytes, Any]:
    """Every key of a single Redis with its type and content."""
    client = Redis.from_url(url)
    try:
        found: dict[bytes, Any] = {}
        async for key in client.scan_iter(count=1000):
            kind = await client.type(key)
            if kind == b"stream":
                found[key] = await client.xrange(key)
            elif kind == b"zset":
                found[key] = await client.zrange(key, 0, -1, withscores=True)
            else:
                found[key] = await client.get(key)
        return found
    finally:
        await client.aclose()


CHATS = {"alice:bob": 1, "carol:dave": 250, "erin:frank": 2_500, '"q\\":😀': 40}


async def test_an_old_store_is_refused_until_migrated(fresh_url: str) -> None:
    """Opening a store of sorted sets raises, naming the command; after it, it opens."""
    await fill(fresh_url, {"alice:bob": 3})
    with pytest.raises(StoreNeedsMigration, match="pullchat-migrate"):
        await MessageStore.open(fresh_url)
    check = await run_command(fresh_url, "--check")
    assert (check.returncode, check.stdout.strip()) == (1, "migration needed"), check
    done = await run_command(fresh_url)
    assert done.returncode == 0, done
    assert "migrated 1 chats, 3 messages" in done.stdout
    assert (await run_command(fresh_url, "--check")).returncode == 0
    store = await MessageStore.open(fresh_url)
    try:
        assert await store.redis.get(LAYOUT_KEY) == LAYOUT
    finally:
        await store.close()


async def test_the_rpc_service_refuses_to_start_on_an_old_store(
    fresh_url: str, tmp_path: Path
) -> None:
    """`pullchat-rpc` on a store of sorted sets exits 1 with one line naming the command."""
    await fill(fresh_url, {"alice:bob": 2})
    env = {**os.environ, "REDIS_URL": fresh_url, "RPC_PORT": str(free_port()), "RPC_WORKERS": "1"}
    done = await run([sys.executable, "-m", "rpc_srv"], env=env, seconds=60)
    assert done.returncode == 1, done
    assert done.stderr.strip().splitlines() == [
        "pullchat-rpc: the store holds chats in the sorted-set layout of an earlier version"
        " (e.g. im:{alice:bob}): stop the RPC services of that version, run pullchat-migrate"
        " with the same REDIS_URL, then start this one"
    ], done.stderr
    assert "Booting worker" not in done.stdout + done.stderr  # refused before any worker


async def test_a_fresh_store_opens_and_is_marked(fresh_url: str) -> None:
    """An empty store is taken as the stream layout and marked so, once."""
    store = await MessageStore.open(fresh_url)
    try:
        assert await store.redis.get(LAYOUT_KEY) == LAYOUT
    finally:
        await store.close()


async def test_an_unknown_layout_is_refused(fresh_url: str) -> None:
    """A marker this version does not know (a later layout) is refused too."""
    client = Redis.from_url(fresh_url)
    try:
        await client.set(LAYOUT_KEY, "something-later")
    finally:
        await client.aclose()
    with pytest.raises(StoreNeedsMigration, match="unknown layout"):
        await MessageStore.open(fresh_url)


async def test_migration_keeps_every_message(fresh_url: str) -> None:
    """Every message keeps its send_time, sender and text; numbers run 1..n; keys still work."""
    sent = await fill(fresh_url, CHATS)
    done = await run_command(fresh_url, "--chunk", "100")
    assert done.returncode == 0, done
    assert f"migrated {len(CHATS)} chats, {sum(CHATS.values()):,} messages" in done.stdout
    assert await stored(fresh_url, list(CHATS)) == rows_of(sent)
    store = await MessageStore.open(fresh_url)
    try:
        for chat, messages in sent.items():
            assert await entry_numbers(store.redis, chat) == list(range(1, len(messages) + 1))
            backward = await store.pull(chat, 0, 1000, True)
            newest = [m["send_time"] for m in backward.messages]
            assert newest == [m.send_time for m in messages][::-1][:1000]
        chat = "erin:frank"
        keyed = next(m for m in sent[chat] if m.client_msg_id)
        retried = await store.send(chat, keyed.sender, keyed.text, keyed.client_msg_id)
        number = sent[chat].index(keyed) + 1
        assert (retried.send_time, retried.duplicate, retried.number) == (
            keyed.send_time,
            True,
            number,
        )
        after = await store.send(chat, "erin", "after the migration")
        assert after.send_time > sent[chat][-1].send_time
        assert after.number == len(sent[chat]) + 1
        assert await store.redis.keys("migrating:*") == []
    finally:
        await store.close()


async def test_the_stack_serves_a_migrated_store(fresh_url: str, make_stack: StackFactory) -> None:
    """The whole service starts on a migrated store and pages its old messages over HTTP."""
    sent = await fill(fresh_url, {"alice:bob": 25})
    assert (await run_command(fresh_url)).returncode == 0
    s = make_stack(fresh_url)
    status, page, _ = http_call(s.base, "GET", "/api/pull?chat=bob:alice&limit=20")
    assert status == 200, page
    old = sent["alice:bob"]
    assert page["messages"] == [
        {"chat": "alice:bob", "text": m.text, "sender": m.sender, "send_time": m.send_time}
        for m in old[:20]
    ]
    assert (page["has_more"], page["next_cursor"]) == (True, old[20].send_time)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
async def test_an_interrupted_migration_goes_on(fresh_url: str, sig: signal.Signals) -> None:
    """Stopped part way, the half-moved chat is still whole for the old version; a rerun ends it."""
    counts = {"big:chat": 6_000, **{f"a{i}:b{i}": 5 for i in range(20)}}
    sent = await fill(fresh_url, counts)
    proc = await asyncio.create_subprocess_exec(
        COMMAND, "--redis-url", fresh_url, "--chunk", "1", stderr=asyncio.subprocess.PIPE
    )
    client = Redis.from_url(fresh_url)
    try:
        deadline = time.monotonic() + 30
        while await client.xlen("migrating:{big:chat}") < 10:
            assert proc.returncode is None and time.monotonic() < deadline, "not caught part way"
            await asyncio.sleep(0.002)
        proc.send_signal(sig)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
        half = [k.decode() async for k in client.scan_iter("migrating:*")]
    finally:
        await client.aclose()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and b"run it again" in err, err
    assert "migrating:{big:chat}" in half, "the big chat was not left half moved"
    # The chats not moved yet are whole sorted sets, readable by the earlier version.
    old = SortedSetStore.from_url(fresh_url)
    try:
        for key in half:
            chat = key.removeprefix("migrating:{").removesuffix("}")
            page = await old.pull(chat, 0, 10_000, False)
            assert [m["send_time"] for m in page.messages] == [m.send_time for m in sent[chat]]
    finally:
        await old.close()
    with pytest.raises(StoreNeedsMigration):
        await MessageStore.open(fresh_url)
    done = await run_command(fresh_url, "--chunk", "500")
    assert done.returncode == 0, done
    assert await stored(fresh_url, list(counts)) == rows_of(sent)
    store = await MessageStore.open(fresh_url)
    try:
        assert await entry_numbers(store.redis, "big:chat") == list(range(1, 6_001))
        assert await store.redis.keys("migrating:*") == []
    finally:
        await store.close()


async def test_running_it_again_changes_nothing(fresh_url: str) -> None:
    """A second run over a migrated store moves nothing and leaves every key as it was."""
    await fill(fresh_url, CHATS)
    assert (await run_command(fresh_url)).returncode == 0
    before = await dump(fresh_url)
    again = await run_command(fresh_url)
    assert again.returncode == 0 and "migrated 0 chats, 0 messages" in again.stdout, again
    assert await dump(fresh_url) == before


async def test_two_runs_at_once(fresh_url: str) -> None:
    """Two migrations at once share the work and still number every message once."""
    sent = await fill(fresh_url, CHATS)
    both = await asyncio.gather(*(run_command(fresh_url, "--chunk", "10") for _ in range(2)))
    assert [d.returncode for d in both] == [0, 0], both
    assert await stored(fresh_url, list(CHATS)) == rows_of(sent)
    client = Redis.from_url(fresh_url)
    try:
        for chat, messages in sent.items():
            assert await entry_numbers(client, chat) == list(range(1, len(messages) + 1))
    finally:
        await client.aclose()


async def test_senders_of_the_old_version_meanwhile_lose_nothing(fresh_url: str) -> None:
    """Messages an old replica adds while its chat moves are moved too, or refused, never lost."""
    chat = "busy:chat"
    sent = await fill(fresh_url, {chat: 3_000})
    old = SortedSetStore.from_url(fresh_url)
    client = Redis.from_url(fresh_url)
    acked: list[tuple[int, str]] = []
    refused = 0
    finished = asyncio.Event()

    async def old_sender() -> None:
        nonlocal refused
        n = 0
        while not finished.is_set():
            text = f"meanwhile {n}"
            try:
                acked.append(((await old.send(chat, "busy", text)).send_time, text))
            except redis_errors.ResponseError as exc:
                assert "WRONGTYPE" in str(exc)
                refused += 1
            n += 1
            await asyncio.sleep(0)

    async def migration() -> None:
        try:
            await migrate.migrate(client, chunk=20)
        finally:
            finished.set()

    try:
        await asyncio.gather(old_sender(), migration())
    finally:
        await old.close()
        await client.aclose()
    assert len(acked) > 20, "the old sender did not overlap the migration"
    assert refused > 0, "the old sender never saw its chat moved"
    expected = [(m.send_time, m.sender, m.text) for m in sent[chat]]
    expected += [(t, "busy", text) for t, text in acked]
    assert (await stored(fresh_url, [chat]))[chat] == sorted(expected)


async def test_on_a_cluster_while_a_slot_moves(
    own_cluster: LocalCluster, cluster_url: str, record_property: Callable[[str, object], None]
) -> None:
    """On a three-master cluster, with a big chat's slot moved meanwhile, everything moves."""
    counts = {f"c{i}:d{i}": 30 for i in range(30)} | {"big:chat": 4_000}
    sent = await fill(cluster_url, counts, cluster=True)
    with pytest.raises(StoreNeedsMigration):
        await MessageStore.open(cluster_url)
    slot = key_slot(chat_key("big:chat").encode())
    proc = await asyncio.create_subprocess_exec(
        COMMAND, "--redis-url", cluster_url, "--chunk", "5",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    moved = await asyncio.to_thread(migrate_slot, slot, own_cluster.ports)
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode == 0, (out, err)
    assert await stored(cluster_url, list(counts), cluster=True) == rows_of(sent)
    store = await MessageStore.open(cluster_url)
    try:
        assert isinstance(store.redis, RedisCluster)
        assert await entry_numbers(store.redis, "big:chat") == list(range(1, 4_001))
        nodes = {store.redis.get_node_from_key(chat_key(c)).name for c in counts}
        assert len(nodes) == 3
    finally:
        await store.close()
    record_property("slot moved between ports", moved)
