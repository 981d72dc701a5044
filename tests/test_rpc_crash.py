"""The front end when RPC processes die under load: fast JSON 503s, /ping stays up, recovery."""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.client import http_call
from tests.load import SendLoad
from tests.stacks import StackFactory

pytestmark = pytest.mark.slow

RPC_TIMEOUT = 1.0


def child_pids(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(c) for c in children]


async def wait_for(predicate: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return predicate()


async def test_rpc_worker_and_service_crash(
    redis_url: str, make_stack: StackFactory, record_property: Callable[[str, object], None]
) -> None:
    """Kill one RPC worker, then the whole RPC service, under 16 senders."""
    stack = make_stack(redis_url, RPC_TIMEOUT=str(RPC_TIMEOUT), RPC_WORKERS="2")
    tag = uuid.uuid4().hex[:6]
    load = SendLoad(stack.base, [f"a{i}{tag}:b{i}{tag}" for i in range(4)], clients=16)
    stop = asyncio.Event()
    try:
        runner = asyncio.create_task(load.run_until(stop))
        await asyncio.sleep(1.0)
        workers = child_pids(stack.rpc.pid)
        assert len(workers) == 2
        os.kill(workers[0], signal.SIGKILL)  # gunicorn starts a new worker
        assert await wait_for(lambda: len(set(child_pids(stack.rpc.pid)) - set(workers)) == 1, 10)
        await asyncio.sleep(1.0)
        worker_phase_end = time.monotonic()

        # Now the whole service: its workers first, then the master.
        for pid in child_pids(stack.rpc.pid):
            os.kill(pid, signal.SIGKILL)
        stack.rpc.signal(signal.SIGKILL)
        stack.rpc.stop()
        await asyncio.sleep(1.0)
        status, body, elapsed = http_call(stack.base, "GET", "/ping")
        assert (status, body) == (200, {"message": "pong"}) and elapsed < 0.5
        stack.rpc.start()  # again, on the same port
        back_at = time.monotonic()
        await asyncio.sleep(3.0)
        stop.set()
        await runner

        acked, failed = load.acked(), load.failed()
        assert len(acked) > 200
        for o in failed:
            assert o.status in (503, 504), o
            assert set(o.body) == {"code", "msg"} and o.body["code"] == o.status, o
            assert o.elapsed <= RPC_TIMEOUT + 0.5, o
        assert [o for o in failed if o.started > worker_phase_end], "the outage was not seen"
        last_failure = max(o.started for o in failed)
        assert last_failure <= back_at + 2.0, "no recovery within 2 s"
        assert any(o.started > back_at for o in acked)
        record_property("acked", len(acked))
        record_property(
            "errors while one of two workers was killed",
            sum(o.started <= worker_phase_end for o in failed),
        )
        record_property("outage answers (503/504)", len(failed))
        record_property("outage answer max latency s", round(max(o.elapsed for o in failed), 3))
        record_property("recovery s after RPC up", round(max(0.0, last_failure - back_at), 3))
    finally:
        stop.set()
