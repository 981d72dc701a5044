"""The front end when the RPC service is down or silent: bounded JSON 503/504, then recovery."""

from __future__ import annotations

import socket
import time
import uuid
from typing import Any

import orjson
import pytest

from launcher.procs import free_port
from launcher.stack import Stack
from tests.client import http_call
from tests.stacks import StackFactory


def post_send(base: str, chat: str = "a:b") -> tuple[int, Any, float]:
    body = orjson.dumps({"chat": chat, "sender": chat.split(":")[0], "text": "x"})
    return http_call(base, "POST", "/api/send", body, {"Content-Type": "application/json"})


@pytest.fixture
def own_stack(redis_url: str, make_stack: StackFactory) -> Stack:
    """A stack whose RPC service a test may stop and start again."""
    return make_stack(redis_url, RPC_TIMEOUT="1")


def test_rpc_down_gives_503_then_recovers(own_stack: Stack) -> None:
    """With the RPC service stopped, sends answer 503 JSON fast; once it is back, 200 again."""
    assert post_send(own_stack.base)[0] == 200
    own_stack.rpc.stop()
    for _ in range(5):
        status, body, elapsed = post_send(own_stack.base)
        assert status == 503, body
        assert body["code"] == 503 and "RPC" in str(body["msg"])
        assert elapsed < 1.5
    assert http_call(own_stack.base, "GET", "/ping")[0] == 200
    own_stack.rpc.start()  # again, on the same port
    deadline = time.monotonic() + 5
    while (status := post_send(own_stack.base)[0]) != 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert status == 200


def test_silent_rpc_gives_504_within_timeout(redis_url: str, make_stack: StackFactory) -> None:
    """An RPC endpoint that accepts but never answers gives 504 JSON within RPC_TIMEOUT."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)  # never accepts: connections queue, requests are never read
        port = silent.getsockname()[1]
        rpc_url = f"http://127.0.0.1:{port}"
        with make_stack(redis_url, RPC_TIMEOUT="0.5", RPC_URL=rpc_url) as s:
            status, body, elapsed = post_send(s.base)
            assert status == 504, body
            assert body["code"] == 504
            assert 0.4 < elapsed < 1.5
            assert http_call(s.base, "GET", "/api/pull?chat=a:b")[0] == 504


def test_redis_down_gives_503(make_stack: StackFactory) -> None:
    """With Redis unreachable, the RPC service answers UNAVAILABLE and the front end 503."""
    s = make_stack(f"redis://127.0.0.1:{free_port()}/0", RPC_TIMEOUT="1")
    status, body, elapsed = post_send(s.base)
    assert status == 503, body
    assert "store" in str(body["msg"])
    assert elapsed < 1.5


def test_unbatched_rpc_client(redis_url: str, make_stack: StackFactory) -> None:
    """With RPC_BATCH=false every call goes alone, with the same answers."""
    import concurrent.futures

    s = make_stack(redis_url, RPC_BATCH="false")
    chat = f"n{uuid.uuid4().hex[:8]}:m"
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: post_send(s.base, chat), range(16)))
    assert {r[0] for r in results} == {200}
    status, page, _ = http_call(s.base, "GET", f"/api/pull?chat={chat}&limit=100")
    assert status == 200
    assert sorted(r[1]["send_time"] for r in results) == [m["send_time"] for m in page["messages"]]
