"""Acknowledged messages survive a Redis crash; the outage answers fast; recovery is automatic."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import Callable

import pytest

from rpc_srv.store import MessageStore
from tests.load import SendLoad
from tests.stacks import StackFactory
from tests.test_store import walk

pytestmark = pytest.mark.slow

RPC_TIMEOUT = 1.0


async def test_redis_sigkill_loses_nothing_acknowledged(
    make_stack: StackFactory, record_property: Callable[[str, object], None]
) -> None:
    """SIGKILL Redis (AOF everysec) under 16 senders: every 200 is kept, nothing twice."""
    stack = make_stack(None, RPC_TIMEOUT=str(RPC_TIMEOUT))  # with a Redis of its own
    redis, url = stack.redis, stack.redis_url
    assert redis is not None
    tag = uuid.uuid4().hex[:6]
    chats = [f"a{i}{tag}:b{i}{tag}" for i in range(4)]
    load = SendLoad(stack.base, chats, clients=16)
    stop = asyncio.Event()
    try:
        runner = asyncio.create_task(load.run_until(stop))
        await asyncio.sleep(1.5)
        killed_at = time.monotonic()
        redis.signal(signal.SIGKILL)
        redis.stop()
        await asyncio.sleep(1.5)
        redis.start()  # the same port and data
        back_at = time.monotonic()
        await asyncio.sleep(3.0)
        stop.set()
        await runner

        acked, failed = load.acked(), load.failed()
        assert len(acked) > 200, "the load did not get going"
        during = [o for o in failed if o.started >= killed_at]
        assert during, "the outage was not seen"
        for o in failed:
            assert o.status in (503, 504), o
            assert set(o.body) == {"code", "msg"} and o.body["code"] == o.status, o
            assert o.elapsed <= RPC_TIMEOUT + 0.5, o
        late = [o for o in failed if o.started > back_at + 2.0]
        assert not late, f"no recovery within 2 s: {len(late)} late failures, e.g. {late[:3]}"
        assert any(o.started > back_at for o in acked), "no 200 after Redis came back"

        store = MessageStore.from_url(url)
        try:
            stored: dict[str, dict[str, int]] = {}
            for chat in chats:
                messages = await walk(store, chat, 1000, False)
                times = [t for t, _ in messages]
                assert times == sorted(set(times)), f"{chat}: send_time not strictly increasing"
                texts = [text for _, text in messages]
                assert len(texts) == len(set(texts)), f"{chat}: a message stored twice"
                stored[chat] = {text: t for t, text in messages}
        finally:
            await store.close()
        lost = [o for o in acked if o.text not in stored[o.chat]]
        assert not lost, f"{len(lost)} acknowledged messages lost, e.g. {lost[:3]}"
        moved = [o for o in acked if stored[o.chat][o.text] != o.body["send_time"]]
        assert not moved, f"send_time changed for {moved[:3]}"
        unacked_stored = sum(o.text in stored[o.chat] for o in failed)
        last_failure = max(o.started for o in failed)
        record_property("acked", len(acked))
        record_property("lost", len(lost))
        record_property("duplicates", 0)
        record_property("outage answers (503/504)", len(failed))
        record_property("outage answer max latency s", round(max(o.elapsed for o in failed), 3))
        record_property("failed sends stored anyway", unacked_stored)
        record_property("recovery s after Redis up", round(max(0.0, last_failure - back_at), 3))
    finally:
        stop.set()
