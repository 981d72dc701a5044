"""Several RPC replicas behind one front end: spreading, failures, discovery, rolling restarts."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.error import URLError
from urllib.request import urlopen

import pytest

from http_srv.rpc_client import RpcClient
from launcher.procs import Child, free_port, http_child, rpc_child
from tests.load import SendLoad

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


class Replicas:
    """RPC replicas on loopback, each its own gunicorn master, sharing one Redis."""

    def __init__(self, redis_url: str, log_dir: Path, hosts: list[str], port: int = 0) -> None:
        self.redis_url = redis_url
        self.log_dir = log_dir
        self.children: dict[str, Child] = {}
        self.urls = [f"http://{host}:{port or free_port()}" for host in hosts]
        self.started = 0

    def env(self, url: str) -> dict[str, str]:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        return dict(
            os.environ,
            REDIS_URL=self.redis_url,
            RPC_HOST=host,
            RPC_PORT=port,
            RPC_DRAIN_SECONDS="1",
            RPC_WORKERS="1",
        )

    def start(self, url: str) -> Child:
        self.started += 1
        child = rpc_child(self.env(url), log=self.log_dir / f"rpc{self.started}.log").start()
        self.children[url] = child
        return child

    def stop_all(self) -> None:
        for child in self.children.values():
            child.stop()


@pytest.fixture
def replicas(redis_url: str, tmp_path: Path) -> Iterator[Replicas]:
    r = Replicas(redis_url, tmp_path, ["127.0.0.1"] * 3)
    for url in r.urls:
        r.start(url)
    yield r
    r.stop_all()


def front_end(rpc_url: str, log: Path, **extra: str) -> tuple[Child, str]:
    port = free_port()
    env = dict(os.environ, RPC_URL=rpc_url, HTTP_HOST="127.0.0.1", HTTP_PORT=str(port))
    env.update(HTTP_WORKERS="1", **extra)
    return http_child(env, log=log).start(), f"http://127.0.0.1:{port}"


def new_chats(n: int) -> list[str]:
    tag = uuid.uuid4().hex[:6]
    return [f"a{i}{tag}:b{i}{tag}" for i in range(n)]


async def test_three_replicas_share_the_load(
    replicas: Replicas, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    """With RPC_URL listing three replicas, each serves a fair share of the calls."""
    http, base = front_end(",".join(replicas.urls), tmp_path / "http.log")
    try:
        before = [calls_served(u) for u in replicas.urls]
        async with SendLoad(base, new_chats(8), clients=16).running() as load:
            await asyncio.sleep(3)
        served = [calls_served(u) - b for u, b in zip(replicas.urls, before, strict=True)]
    finally:
        http.stop()
    assert not load.failed(), load.failed()[:3]
    total = sum(served)
    assert total >= len(load.acked())
    record_property("calls per replica", served)
    assert min(served) > total / 3 * 0.6, served


async def test_replica_killed_then_back(
    replicas: Replicas, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    """SIGKILL one of three replicas under load: only calls in flight on it may fail."""
    http, base = front_end(",".join(replicas.urls), tmp_path / "http.log")
    try:
        async with SendLoad(base, new_chats(8), clients=16).running() as load:
            await asyncio.sleep(1.5)
            victim = replicas.urls[0]
            child = replicas.children[victim]
            workers = Path(f"/proc/{child.pid}/task/{child.pid}/children").read_text()  # noqa: ASYNC240
            for pid in workers.split():
                os.kill(int(pid), signal.SIGKILL)
            child.signal(signal.SIGKILL)
            child.stop()
            killed_at = time.monotonic()
            await asyncio.sleep(2.0)
            replicas.start(victim)
            back_before = calls_served(victim)
            await asyncio.sleep(4.0)  # longer than the 2 s a failed replica is skipped
            back_calls = calls_served(victim) - back_before
    finally:
        http.stop()
    failed = load.failed()
    late = [o for o in failed if o.started > killed_at + 0.1]
    record_property("failed (in flight on the killed replica)", len(failed))
    record_property("failed after the kill", len(late))
    record_property("calls on the replica once back", back_calls)
    assert len(failed) <= 16, failed[:3]  # at most one in-flight batch per client
    assert not late, late[:3]
    assert back_calls > 0, "the restarted replica got no traffic"


async def test_rolling_restart_has_no_errors(
    replicas: Replicas, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    """SIGTERM each replica in turn under load (restarting it before the next): zero errors."""
    http, base = front_end(",".join(replicas.urls), tmp_path / "http.log")
    try:
        async with SendLoad(base, new_chats(8), clients=16).running() as load:
            await asyncio.sleep(1.0)
            for url in replicas.urls:
                child = replicas.children[url]
                started = time.monotonic()
                await asyncio.to_thread(child.stop)  # SIGTERM: drain, finish, exit
                record_property(f"drain and stop of {url} s", round(time.monotonic() - started, 2))
                await asyncio.to_thread(replicas.start, url)
                await asyncio.sleep(1.0)
    finally:
        http.stop()
    record_property("acked", len(load.acked()))
    record_property("errors", len(load.failed()))
    assert len(load.acked()) > 500
    assert not load.failed(), load.failed()[:3]


async def test_replicas_found_by_name_come_and_go(
    redis_url: str, tmp_path: Path, record_property: Callable[[str, object], None]
) -> None:
    """A host name standing for several addresses: new ones get calls, gone ones are dropped."""
    port = free_port("127.0.0.2")
    r = Replicas(redis_url, tmp_path, ["127.0.0.2", "127.0.0.3", "127.0.0.4"], port)
    addresses = ["127.0.0.2", "127.0.0.3"]

    async def resolve(host: str, _port: int) -> list[str]:
        # The only stand-in in this test: the DNS answer. Replicas are real.
        assert host == "rpc.pullchat.test"
        return list(addresses)

    for url in r.urls:
        r.start(url)
    client = RpcClient(
        f"http://rpc.pullchat.test:{port}", 2.0, resolve_interval=0.2, resolve=resolve
    )
    await client.start()
    try:
        chat = new_chats(1)[0]
        sender = chat.split(":")[0]

        async def burst(n: int) -> list[int]:
            before = [calls_served(u) for u in r.urls]
            for _ in range(n // 10):
                await asyncio.gather(*(client.send(chat, sender, "x", None) for _ in range(10)))
            return [calls_served(u) - b for u, b in zip(r.urls, before, strict=True)]

        first = await burst(200)
        addresses.append("127.0.0.4")
        await asyncio.sleep(0.5)
        second = await burst(200)
        addresses.remove("127.0.0.2")
        await asyncio.sleep(0.5)
        r.children[r.urls[0]].stop()
        third = await burst(200)
    finally:
        await client.close()
        r.stop_all()
    record_property("calls per address, two known", first)
    record_property("after a third appears", second)
    record_property("after the first is gone", third)
    assert first[0] > 0 and first[1] > 0 and first[2] == 0
    assert all(n > 0 for n in second)
    assert third[0] == 0 and third[1] > 0 and third[2] > 0
