"""Fixtures: a real redis-server and real server processes on loopback ports."""

from __future__ import annotations

import http.client
import os
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest

from launcher.procs import Child, free_port, http_child, redis_child, rpc_child
from rpc_srv.store import MessageStore


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A redis-server of its own for the whole test session."""
    port = free_port()
    data = tmp_path_factory.mktemp("redis")
    child = redis_child(port, data, log=data / "redis.log").start()
    yield f"redis://127.0.0.1:{port}/0"
    child.stop()


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[MessageStore]:
    s = MessageStore.from_url(redis_url, pool_size=32, idempotency_ttl=60)
    yield s
    await s.close()


@pytest.fixture
def chat() -> str:
    """A chat nobody else in the session uses."""
    tag = uuid.uuid4().hex[:8]
    return f"alice-{tag}:bob-{tag}"


@dataclass
class Stack:
    base: str  # the front end, e.g. http://127.0.0.1:PORT
    rpc_url: str
    redis_url: str
    http: Child
    rpc: Child
    env: dict[str, str]
    log_dir: Path


def start_stack(redis_url: str, log_dir: Path, **overrides: str) -> Stack:
    """An RPC service and a front end on free ports, talking to `redis_url`."""
    rpc_port, http_port = free_port(), free_port()
    env = dict(os.environ)
    env.update(
        REDIS_URL=redis_url,
        RPC_HOST="127.0.0.1",
        RPC_PORT=str(rpc_port),
        RPC_URL=f"http://127.0.0.1:{rpc_port}",
        HTTP_HOST="127.0.0.1",
        HTTP_PORT=str(http_port),
        # One process per tier unless a test asks for more: quicker to start and
        # stop, and Sanic's worker manager holds SIGTERM until its workers have
        # acknowledged their start, which a short test can beat.
        HTTP_WORKERS="1",
        RPC_WORKERS="1",
    )
    env.update(overrides)
    log_dir.mkdir(parents=True, exist_ok=True)
    rpc = rpc_child(env, log=log_dir / "rpc.log").start()
    http = http_child(env, log=log_dir / "http.log").start()
    return Stack(
        f"http://127.0.0.1:{http_port}", env["RPC_URL"], redis_url, http, rpc, env, log_dir
    )


def stop_stack(stack: Stack) -> None:
    stack.http.stop()
    stack.rpc.stop()


@pytest.fixture(scope="session")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The whole service, shared by the end-to-end tests of a session."""
    # A short request timeout keeps the slow-client test short.
    s = start_stack(redis_url, tmp_path_factory.mktemp("stack"), REQUEST_TIMEOUT="2")
    yield s
    stop_stack(s)


def http_call(
    base: str,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> tuple[int, Any, float]:
    """One request on a fresh connection: (status, decoded JSON body, seconds taken)."""
    url = urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=timeout)
    started = time.monotonic()
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
    finally:
        conn.close()
    return resp.status, orjson.loads(data) if data else None, time.monotonic() - started


_figures: list[tuple[str, list[tuple[str, object]]]] = []


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" and report.user_properties:
        _figures.append((report.nodeid, list(report.user_properties)))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the figures that fault and soak tests record with record_property."""
    if not _figures:
        return
    terminalreporter.section("measured figures")
    for nodeid, props in _figures:
        terminalreporter.write_line(nodeid)
        for name, value in props:
            terminalreporter.write_line(f"    {name}: {value}")


@pytest.fixture(scope="session")
def cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A three-master Redis Cluster of its own (started only by tests that ask)."""
    from tests.cluster import LocalCluster

    cluster = LocalCluster(tmp_path_factory.mktemp("cluster")).start()
    yield cluster.url
    cluster.stop()
