"""Fixtures: a real redis-server and real server processes on loopback ports."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import RedisCluster

from launcher.procs import free_port, redis_child
from launcher.stack import Stack
from rpc_srv.store import MessageStore
from tests.figures import Figures
from tests.stacks import StackFactory


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A redis-server of its own for the whole test session."""
    port = free_port()
    data = tmp_path_factory.mktemp("redis")
    child = redis_child(port, data, log=data / "redis.log").start()
    yield child.url
    child.stop()


@pytest.fixture
async def store(redis_url: str) -> AsyncIterator[MessageStore]:
    s = MessageStore.from_url(redis_url, pool_size=32, idempotency_ttl=60)
    yield s
    await s.close()


@pytest.fixture
async def cstore(cluster_url: str) -> AsyncIterator[MessageStore]:
    """A store on the three-master cluster."""
    store = await MessageStore.open(cluster_url, idempotency_ttl=60)
    assert isinstance(store.redis, RedisCluster)
    yield store
    await store.close()


@pytest.fixture
def chat() -> str:
    """A chat nobody else in the session uses."""
    tag = uuid.uuid4().hex[:8]
    return f"alice-{tag}:bob-{tag}"


@pytest.fixture(scope="session")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The whole service, shared by the end-to-end tests of a session."""
    stacks = StackFactory(tmp_path_factory.mktemp("stack"))
    # A short request timeout keeps the slow-client test short.
    yield stacks(redis_url, REQUEST_TIMEOUT="2")
    stacks.stop_all()


@pytest.fixture
def make_stack(tmp_path: Path) -> Iterator[StackFactory]:
    """Starts stacks for one test, the first with its logs in tmp_path; all stopped after it."""
    stacks = StackFactory(tmp_path)
    yield stacks
    stacks.stop_all()


@pytest.fixture(scope="session")
def cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A three-master Redis Cluster of its own (started only by tests that ask)."""
    from tests.cluster import LocalCluster

    cluster = LocalCluster(tmp_path_factory.mktemp("cluster")).start()
    yield cluster.url
    cluster.stop()


figures = Figures()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    figures.collect(report)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Print the figures that fault and soak tests record with record_property."""
    figures.write(terminalreporter)
