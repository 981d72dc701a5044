"""The RPC service on its own: IDL-shaped bodies, code/msg in every reply, batches."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from launcher.procs import free_port, redis_child
from launcher.stack import Stack
from tests.client import http_call
from tests.stacks import StackFactory


def rpc(stack: Stack, path: str, body: Any) -> tuple[int, Any]:
    status, reply, _ = http_call(stack.rpc_url, "POST", path, orjson.dumps(body))
    return status, reply


def chat() -> str:
    tag = uuid.uuid4().hex[:8]
    return f"r{tag}:s{tag}"


def test_send_and_pull(stack: Stack) -> None:
    """Send(SendRequest{message}) then Pull(PullRequest) in the IDL's shape."""
    c = chat()
    first = c.split(":")[0]
    status, sent = rpc(stack, "/rpc/send", {"message": {"chat": c, "text": "t", "sender": first}})
    assert status == 200 and sent["code"] == 0 and sent["chat"] == c
    status, page = rpc(stack, "/rpc/pull", {"chat": c, "cursor": 0, "limit": 10})
    assert page == {
        "code": 0,
        "msg": "success",
        "messages": [{"chat": c, "text": "t", "sender": first, "send_time": sent["send_time"]}],
        "has_more": False,
        "next_cursor": 0,
        "tail_cursor": sent["send_time"] + 1,
    }


def test_health(stack: Stack) -> None:
    """/health answers code 0 while Redis answers."""
    status, reply, _ = http_call(stack.rpc_url, "GET", "/health")
    assert (status, reply) == (200, {"code": 0, "msg": "ok"})


@pytest.mark.parametrize("password", [None, "wrong"])
def test_health_says_redis_refuses_us(
    tmp_path: Path, make_stack: StackFactory, password: str | None
) -> None:
    """A Redis that wants another password: /health is a 503 with the reason, not a 500."""
    port = free_port()
    redis = redis_child(
        port, tmp_path / "redis", log=tmp_path / "redis.log", appendonly=False, password="right"
    ).start()
    auth = f":{password}@" if password else ""
    try:
        rpc = make_stack(f"redis://{auth}127.0.0.1:{port}/0", start=False).add_rpc()
        status, reply, seconds = http_call(rpc.url, "GET", "/health")
    finally:
        make_stack.stop_all()  # before its Redis
        redis.stop()
    assert status == 503, reply
    assert reply["code"] == 2 and "Authentication" in reply["msg"], reply
    assert seconds < 2
    assert "Traceback" not in (tmp_path / "rpc.log").read_text("utf-8", "replace")


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/rpc/send", {"message": "x"}),
        ("/rpc/send", {"message": {"chat": "a:b", "text": "t", "sender": "c"}}),
        ("/rpc/pull", {"chat": "a:b", "limit": 1001}),
        ("/rpc/pull", {"chat": "a:b", "reverse": "yes"}),
        ("/rpc/pull", [1]),
        ("/rpc/batch", {"calls": []}),
        ("/rpc/batch", {"calls": "x"}),
    ],
)
def test_invalid_requests(stack: Stack, path: str, body: Any) -> None:
    """A request that breaks the contract gets code 1 (INVALID_ARGUMENT) and words."""
    status, reply = rpc(stack, path, body)
    assert status == 200 and reply["code"] == 1 and reply["msg"], reply


def test_batch_keeps_each_reply_apart(stack: Stack) -> None:
    """A batch answers each call in order, with its own code; bad calls fail alone."""
    c = chat()
    first = c.split(":")[0]
    calls = [
        {"method": "send", "request": {"message": {"chat": c, "text": "1", "sender": first}}},
        {"method": "send", "request": {"message": {"chat": c, "text": "2", "sender": "zz"}}},
        {"method": "nope", "request": {}},
        {"method": "send", "request": {"message": {"chat": c, "text": "3", "sender": first}}},
        {"method": ["send"], "request": {}},  # not even hashable
        {"method": "pull", "request": {"chat": c, "limit": 5}},
    ]
    status, reply = rpc(stack, "/rpc/batch", {"calls": calls})
    assert status == 200 and reply["code"] == 0
    codes = [r["code"] for r in reply["replies"]]
    assert codes == [0, 1, 1, 0, 1, 0]
    one, three = reply["replies"][0], reply["replies"][3]
    assert three["send_time"] > one["send_time"]
    texts = [m["text"] for m in reply["replies"][5]["messages"]]
    assert texts in (["1", "3"], ["1"], [])  # the pull ran concurrently with the sends


def test_unknown_path_and_method(stack: Stack) -> None:
    """404 and 405 come back as JSON with a non-zero code."""
    status, reply, _ = http_call(stack.rpc_url, "GET", "/rpc/nothing")
    assert status == 404 and reply["code"] != 0
    status, reply, _ = http_call(stack.rpc_url, "GET", "/rpc/send")
    assert status == 405 and reply["code"] != 0
