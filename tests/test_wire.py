"""The wire rules the front end relies on to pass replies through without decoding them.

contract/wire.py: every reply's JSON begins with its code (a success with
OK_REPLY_PREFIX), a batch asked for NDJSON answers one reply per line, and a
successful Pull reply is the public pull answer byte for byte.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson

from contract.wire import BATCH_PATH, NDJSON, OK_REPLY_PREFIX, PULL_PATH, SEND_PATH
from launcher.stack import Stack
from tests.client import request


def post(base: str, path: str, body: Any, accept: str | None = None) -> tuple[str, bytes]:
    """(Content-Type, raw body) of one POST of JSON."""
    headers = {"Content-Type": "application/json"}
    if accept is not None:
        headers["Accept"] = accept
    reply = request(base, "POST", path, orjson.dumps(body), headers)
    return reply.content_type, reply.raw


def new_chat() -> tuple[str, str]:
    tag = uuid.uuid4().hex[:8]
    return f"w{tag}:x{tag}", f"w{tag}"


def test_batch_as_ndjson_is_the_json_replies_one_per_line(stack: Stack) -> None:
    """The same calls answered as JSON and as NDJSON give the same replies, in order."""
    chat, sender = new_chat()
    post(stack.rpc_url, SEND_PATH, {"message": {"chat": chat, "text": "a\nb", "sender": sender}})
    calls = {
        "calls": [
            {"method": "pull", "request": {"chat": chat, "limit": 5}},
            {"method": "pull", "request": {"chat": chat, "limit": 5000}},
            {"method": "nope", "request": {}},
        ]
    }
    _, as_json = post(stack.rpc_url, BATCH_PATH, calls)
    media, as_lines = post(stack.rpc_url, BATCH_PATH, calls, accept=NDJSON)
    assert media.startswith(NDJSON), media
    lines = as_lines.split(b"\n")
    assert [orjson.loads(line) for line in lines] == orjson.loads(as_json)["replies"]
    assert lines[0].startswith(OK_REPLY_PREFIX)
    assert not lines[1].startswith(OK_REPLY_PREFIX) and orjson.loads(lines[1])["code"] == 1
    assert orjson.loads(lines[1])["msg"].startswith("limit:")


def test_a_bad_batch_is_a_json_error_even_when_ndjson_is_asked(stack: Stack) -> None:
    media, raw = post(stack.rpc_url, BATCH_PATH, {"calls": []}, accept=NDJSON)
    assert media.startswith("application/json") and orjson.loads(raw)["code"] == 1


def test_pull_answer_is_the_rpc_reply_byte_for_byte(stack: Stack) -> None:
    """What the front end answers to a pull is exactly what the RPC service encoded."""
    chat, sender = new_chat()
    for text in ("one", "twö", '<"three">'):
        post(stack.base, "/api/send", {"chat": chat, "sender": sender, "text": text})
    _, rpc_page = post(stack.rpc_url, PULL_PATH, {"chat": chat, "cursor": 0, "limit": 2})
    assert rpc_page.startswith(OK_REPLY_PREFIX)
    assert request(stack.base, "GET", f"/api/pull?chat={chat}&limit=2").raw == rpc_page
