"""Several RPC replicas behind one front end: spreading, failures, discovery, rolling restarts."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.error import URLError
from urllib.request import urlopen

import pytest

from http_srv.rpc_client import RpcClient
from launcher.procs import free_port
from launcher.stack import Stack
from tests.load import SendLoad
from tests.stacks import StackFactory

pytestmark = pytest.mark.slow


def calls_served(rpc_url: str) -> int:
    """Send and Pull calls a replica has answered, from its /metrics (0 if it is gone)."""
    try:
        with urlopen(rpc_url + "/metrics", timeout=5) as resp:
            text = resp.read().decode()
    except URLError:
        return 0
    return int(
        sum(float(v) for v in re.findall(r"^pullchat_rpc_calls_total\{[^}]*\} (\S+)$", text, re.M))
    )


def start_replicas(
    make_stack: StackFactory, redis_url: str, hosts: list[str], port: int = 0
) -> Stack:
    """RPC replicas at `hosts`:`port` (0: each a free one), each its own gunicorn master,
    sharing one Redis; no front end yet."""
    replicas = make_stack(redis_url, start=False, RPC_DRAIN_SECONDS="1")
    for host in hosts:
        replicas.add_rpc(host=host, port=port)
    return replicas


def replica_urls(replicas: Stack) -> list[str]:
    return [child.url for child in replicas.rpcs]


@pytest.fixture
def replicas(redis_url: str, make_stack: StackFactory) -> Stack:
    """Three replicas on 127.0.0.1, each on a port of its own."""
    return start_replicas(make_stack, redis_url, ["127.0.0.1"] * 3)


def new_chats(n: int) -> list[str]:
    tag = uuid.uuid4().hex[:6]
    return [f"a{i}{tag}:b{i}{tag}" for i in range(n)]


def load_through_a_front_end(replicas: Stack) -> SendLoad:
    """16 senders to 8 chats through a new front end whose RPC_URL lists every replica."""
    base = replicas.add_http(RPC_URL=",".join(replica_urls(replicas))).url
    return SendLoad(base, new_chats(8), clients=16)


async def test_three_replicas_share_the_load(
    replicas: Stack, record_property: Callable[[str, object], None]
) -> None:
    """With RPC_URL listing three replicas, each serves a fair share of the calls."""
    sends = load_through_a_front_end(replicas)
    urls = replica_urls(replicas)
    before = [calls_served(u) for u in urls]
    async with sends.running() as load:
        await asyncio.sleep(3)
    served = [calls_served(u) - b for u, b in zip(urls, before, strict=True)]
    assert not load.failed(), load.failed()[:3]
    total = sum(served)
    assert total >= len(load.acked())
    record_property("calls per replica", served)
    assert min(served) > total / 3 * 0.6, served


async def test_replica_killed_then_back(
    replicas: Stack, record_property: Callable[[str, object], None]
) -> None:
    """SIGKILL one of three replicas under load: only calls in flight on it may fail."""
    async with load_through_a_front_end(replicas).running() as load:
        await asyncio.sleep(1.5)
        victim = replicas.rpcs[0]
        workers = Path(f"/proc/{victim.pid}/task/{victim.pid}/children").read_text()  # noqa: ASYNC240
        for pid in workers.split():
            os.kill(int(pid), signal.SIGKILL)
        victim.signal(signal.SIGKILL)
        victim.stop()
        killed_at = time.monotonic()
        await asyncio.sleep(2.0)
        victim.start()  # again, at the same address
        back_before = calls_served(victim.url)
        await asyncio.sleep(4.0)  # longer than the 2 s a failed replica is skipped
        back_calls = calls_served(victim.url) - back_before
    failed = load.failed()
    late = [o for o in failed if o.started > killed_at + 0.1]
    record_property("failed (in flight on the killed replica)", len(failed))
    record_property("failed after the kill", len(late))
    record_property("calls on the replica once back", back_calls)
    assert len(failed) <= 16, failed[:3]  # at most one in-flight batch per client
    assert not late, late[:3]
    assert back_calls > 0, "the restarted replica got no traffic"


async def test_rolling_restart_has_no_errors(
    replicas: Stack, record_property: Callable[[str, object], None]
) -> None:
    """SIGTERM each replica in turn under load (restarting it before the next): zero errors."""
    async with load_through_a_front_end(replicas).running() as load:
        await asyncio.sleep(1.0)
        for child in replicas.rpcs:
            started = time.monotonic()
            await asyncio.to_thread(child.stop)  # SIGTERM: drain, finish, exit
            took = round(time.monotonic() - started, 2)
            record_property(f"drain and stop of {child.url} s", took)
            await asyncio.to_thread(child.start)
            await asyncio.sleep(1.0)
    record_property("acked", len(load.acked()))
    record_property("errors", len(load.failed()))
    assert len(load.acked()) > 500
    assert not load.failed(), load.failed()[:3]


async def test_replicas_found_by_name_come_and_go(
    redis_url: str, make_stack: StackFactory, record_property: Callable[[str, object], None]
) -> None:
    """A host name standing for several addresses: new ones get calls, gone ones are dropped."""
    port = free_port("127.0.0.2")
    addresses = ["127.0.0.2", "127.0.0.3"]

    async def resolve(host: str, _port: int) -> list[str]:
        # The only stand-in in this test: the DNS answer. Replicas are real.
        assert host == "rpc.pullchat.test"
        return list(addresses)

    r = start_replicas(make_stack, redis_url, ["127.0.0.2", "127.0.0.3", "127.0.0.4"], port)
    urls = replica_urls(r)
    client = RpcClient(
        f"http://rpc.pullchat.test:{port}", 2.0, resolve_interval=0.2, resolve=resolve
    )
    await client.start()
    try:
        chat = new_chats(1)[0]
        sender = chat.split(":")[0]

        async def burst(n: int) -> list[int]:
            before = [calls_served(u) for u in urls]
            for _ in range(n // 10):
                await asyncio.gather(*(client.send(chat, sender, "x", None) for _ in range(10)))
            return [calls_served(u) - b for u, b in zip(urls, before, strict=True)]

        first = await burst(200)
        addresses.append("127.0.0.4")
        await asyncio.sleep(0.5)
        second = await burst(200)
        addresses.remove("127.0.0.2")
        await asyncio.sleep(0.5)
        r.rpcs[0].stop()
        third = await burst(200)
    finally:
        await client.close()
    record_property("calls per address, two known", first)
    record_property("after a third appears", second)
    record_property("after the first is gone", third)
    assert first[0] > 0 and first[1] > 0 and first[2] == 0
    assert all(n > 0 for n in second)
    assert third[0] == 0 and third[1] > 0 and third[2] > 0
