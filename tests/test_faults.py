"""The front end when the RPC service is down or silent: bounded JSON 503/504, then recovery."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from launcher.procs import free_port, rpc_child
from tests.conftest import Stack, http_call, start_stack, stop_stack


def post_send(base: str, chat: str = "a:b") -> tuple[int, Any, float]:
    body = orjson.dumps({"chat": chat, "sender": chat.split(":")[0], "text": "x"})
    return http_call(base, "POST", "/api/send", body, {"Content-Type": "application/json"})


@pytest.fixture
def own_stack(redis_url: str, tmp_path: Path) -> Iterator[Stack]:
    """A stack whose RPC service a test may stop and start again."""
    s = start_stack(redis_url, tmp_path, RPC_TIMEOUT="1")
    yield s
    stop_stack(s)


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
    own_stack.rpc = rpc_child(own_stack.env, log=own_stack.log_dir / "rpc2.log").start()
    deadline = time.monotonic() + 5
    while (status := post_send(own_stack.base)[0]) != 200 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert status == 200


def test_silent_rpc_gives_504_within_timeout(redis_url: str, tmp_path: Path) -> None:
    """An RPC endpoint that accepts but never answers gives 504 JSON within RPC_TIMEOUT."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)  # never accepts: connections queue, requests are never read
        port = silent.getsockname()[1]
        s = start_stack(redis_url, tmp_path, RPC_TIMEOUT="0.5", RPC_URL=f"http://127.0.0.1:{port}")
        try:
            status, body, elapsed = post_send(s.base)
            assert status == 504, body
            assert body["code"] == 504
            assert 0.4 < elapsed < 1.5
            assert http_call(s.base, "GET", "/api/pull?chat=a:b")[0] == 504
        finally:
            stop_stack(s)


def test_redis_down_gives_503(tmp_path: Path) -> None:
    """With Redis unreachable, the RPC service answers UNAVAILABLE and the front end 503."""
    s = start_stack(f"redis://127.0.0.1:{free_port()}/0", tmp_path, RPC_TIMEOUT="1")
    try:
        status, body, elapsed = post_send(s.base)
        assert status == 503, body
        assert "store" in str(body["msg"])
        assert elapsed < 1.5
    finally:
        stop_stack(s)


def test_unbatched_rpc_client(redis_url: str, tmp_path: Path) -> None:
    """With RPC_BATCH=false every call goes alone, with the same answers."""
    import concurrent.futures

    s = start_stack(redis_url, tmp_path, RPC_BATCH="false")
    try:
        chat = f"n{uuid.uuid4().hex[:8]}:m"
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda _: post_send(s.base, chat), range(16)))
        assert {r[0] for r in results} == {200}
        status, page, _ = http_call(s.base, "GET", f"/api/pull?chat={chat}&limit=100")
        assert status == 200
        assert sorted(r[1]["send_time"] for r in results) == [
            m["send_time"] for m in page["messages"]
        ]
    finally:
        stop_stack(s)
