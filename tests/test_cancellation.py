"""No crossed responses when requests are abandoned mid-flight between every tier.

Delay proxies sit between the front end and the RPC service and between the
RPC service and Redis; clients give up on many requests part-way. Every answer
that does arrive must belong to its own request (the redis-py
CVE-2023-28858/28859 class of bug, and its HTTP-pool equivalent).
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Callable
from urllib.parse import urlsplit

import aiohttp
import orjson
import pytest

from launcher.procs import free_port
from rpc_srv.store import MessageStore
from tests.proxy import delay_proxy
from tests.stacks import StackFactory

pytestmark = pytest.mark.slow

CLIENTS = 24
REQUESTS_PER_CLIENT = 150


async def test_abandoned_requests_never_cross(
    redis_url: str, make_stack: StackFactory, record_property: Callable[[str, object], None]
) -> None:
    """Thousands of sends and pulls, a third abandoned mid-flight: zero crossed answers."""
    redis_port = urlsplit(redis_url).port
    assert redis_port is not None
    counts = {"answered": 0, "abandoned": 0, "crossed": 0, "errors": 0}
    rpc_port = free_port()
    with (
        delay_proxy(redis_port, 0.0, 0.004) as redis_proxy,
        delay_proxy(rpc_port, 0.0, 0.004) as rpc_proxy,
        make_stack(  # stopped first, while the proxies still forward
            f"redis://127.0.0.1:{redis_proxy.port}/0",
            RPC_TIMEOUT="2",
            RPC_PORT=str(rpc_port),
            RPC_URL=f"http://127.0.0.1:{rpc_proxy.port}",
        ) as stack,
    ):
        await asyncio.gather(*(client(stack.base, n, counts) for n in range(CLIENTS)))
    for name, value in counts.items():
        record_property(name, value)
    assert counts["crossed"] == 0, counts
    assert counts["answered"] > 1000 and counts["abandoned"] > 300, counts
    assert counts["errors"] == 0, counts


async def client(base: str, n: int, counts: dict[str, int]) -> None:
    """One client with its own chat: sends and pulls, abandoning some at random."""
    rng = random.Random(n)
    tag = uuid.uuid4().hex[:8]
    chat = f"me{n}-{tag}:you{n}-{tag}"
    me = chat.split(":")[0]
    async with aiohttp.ClientSession(base) as session:
        for i in range(REQUESTS_PER_CLIENT):
            abandon_after = rng.uniform(0.001, 0.012) if rng.random() < 0.35 else None
            if rng.random() < 0.5:
                request = session.post(
                    "/api/send",
                    data=orjson.dumps({"chat": chat, "sender": me, "text": f"{n}-{i}"}),
                    headers={"Content-Type": "application/json"},
                )
            else:
                request = session.get(
                    "/api/pull", params={"chat": chat, "limit": "5", "reverse": "true"}
                )

            async def exchange(req: aiohttp.client._RequestContextManager) -> tuple[int, bytes]:
                async with req as resp:
                    return resp.status, await resp.read()

            try:
                if abandon_after is None:
                    status, raw = await exchange(request)
                else:
                    async with asyncio.timeout(abandon_after):
                        status, raw = await exchange(request)
            except TimeoutError:
                counts["abandoned"] += 1
                continue
            counts["answered"] += 1
            if status != 200:
                counts["errors"] += 1
                continue
            body = orjson.loads(raw)
            if "messages" in body:
                ok = all(
                    m["chat"] == chat and m["text"].startswith(f"{n}-") for m in body["messages"]
                )
            else:
                ok = body["chat"] == chat and body["sender"] == me
            if not ok:
                counts["crossed"] += 1


async def test_store_cancelled_calls_never_cross(redis_url: str) -> None:
    """Store calls cancelled mid-reply leave no stale reply on a pooled connection."""
    redis_port = urlsplit(redis_url).port
    assert redis_port is not None
    tag = uuid.uuid4().hex[:8]
    chats = [f"s{i}-{tag}:t{i}-{tag}" for i in range(8)]
    with delay_proxy(redis_port, 0.0, 0.003) as proxy:
        store = MessageStore.from_url(f"redis://127.0.0.1:{proxy.port}/0", pool_size=8)
        try:
            for chat in chats:
                await store.send(chat, chat.split(":")[0], chat)
            rng = random.Random(7)
            cancelled = crossed = 0

            async def pull(chat: str) -> None:
                nonlocal cancelled, crossed
                try:
                    async with asyncio.timeout(rng.uniform(0.0005, 0.006)):
                        page = await store.pull(chat, 0, 10, False)
                except TimeoutError:
                    cancelled += 1
                    return
                if [m["text"] for m in page.messages] != [chat]:
                    crossed += 1

            for _ in range(40):
                await asyncio.gather(*(pull(rng.choice(chats)) for _ in range(40)))
        finally:
            await store.close()
    assert cancelled > 100
    assert crossed == 0
