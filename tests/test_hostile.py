"""Hostile input: each gets its documented 4xx JSON answer and stores nothing."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import quote

import orjson
import pytest

from launcher.stack import Stack
from tests.client import http_call

JSON = {"Content-Type": "application/json"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
TEXT_LIMIT = 64 * 1024


def fresh_chat() -> tuple[str, str, str]:
    tag = uuid.uuid4().hex[:8]
    a, b = f"h{tag}", f"k{tag}"
    return f"{a}:{b}", a, b


def stored(stack: Stack, chat: str) -> list[Any]:
    status, body, _ = http_call(stack.base, "GET", f"/api/pull?chat={quote(chat)}&limit=1000")
    assert status == 200, body
    messages: list[Any] = body["messages"]
    return messages


def send_cases(chat: str, a: str) -> list[tuple[str, bytes, dict[str, str], int, str]]:
    """(name, body, headers, status, field) of hostile sends into `chat` as `a`."""

    def js(**fields: Any) -> bytes:
        return orjson.dumps({"chat": chat, "sender": a, "text": "x", **fields})

    nested = b"[" * 5000 + b"]" * 5000
    return [
        ("body over the limit", b"{" + b" " * (1024 * 1024) + b"}", JSON, 413, ""),
        ("deeply nested JSON", b'{"chat": "' + chat.encode() + b'", "x": ' + nested + b"}",
         JSON, 400, "body"),
        ("invalid UTF-8 in JSON", js()[:-1] + b', "text": "\xc3\x28"}', JSON, 400, "body"),
        ("invalid UTF-8 in a form", f"chat={chat}&sender={a}&text=".encode() + b"\xff",
         FORM, 400, "body"),
        ("lone surrogate in JSON", js()[:-1] + b', "text": "\\ud800"}', JSON, 400, "body"),
        ("NUL in a member", js(sender="a\u0000"), JSON, 400, "sender"),
        ("NUL in the chat", js(chat=chat + "\u0000"), JSON, 400, "chat"),
        ("member with ':'", js(chat=f"{a}:b:c"), JSON, 400, "chat"),
        ("blank member", js(chat=f"{a}:   "), JSON, 400, "chat"),
        ("empty member", js(chat=f"{a}:"), JSON, 400, "chat"),
        ("member of 129 characters", js(chat=f"{a}:" + "é" * 129), JSON, 400, "chat"),
        ("text over the limit", js(text="x" * (TEXT_LIMIT + 1)), JSON, 400, "text"),
        ("text over the limit in bytes", js(text="é" * (TEXT_LIMIT // 2 + 1)), JSON, 400, "text"),
        ("number for text", js(text=12), JSON, 400, "text"),
        ("object for sender", js(sender={"a": 1}), JSON, 400, "sender"),
        ("NaN in JSON", js()[:-1] + b', "n": NaN}', JSON, 400, "body"),
        ("huge integer", js()[:-1] + b', "text": ' + b"9" * 30 + b"}", JSON, 400, "text"),
        ("huger integer", js()[:-1] + b', "text": ' + b"9" * 400 + b"}", JSON, 400, "body"),
        ("JSON array", b"[1, 2]", JSON, 400, "body"),
        ("truncated JSON", js()[:-5], JSON, 400, "body"),
        ("unknown Content-Type", b"chat=x", {"Content-Type": "text/csv"}, 415, "body"),
        ("long idempotency key", js(), {**JSON, "Idempotency-Key": "k" * 129}, 400,
         "Idempotency-Key"),
    ]  # fmt: skip


@pytest.mark.parametrize("index", range(22))
def test_hostile_send(stack: Stack, index: int) -> None:
    """A hostile send gets its 4xx JSON error naming the field, and stores nothing."""
    chat, a, _ = fresh_chat()
    name, body, headers, status, field = send_cases(chat, a)[index]
    got, answer, _ = http_call(stack.base, "POST", "/api/send", body, headers)
    assert got == status, (name, answer)
    assert set(answer) == {"code", "msg"} and answer["code"] == status, (name, answer)
    assert answer["msg"].startswith(field), (name, answer)
    assert stored(stack, chat) == [], name


def test_case_count_matches() -> None:
    """The parametrisation covers every hostile send case."""
    assert len(send_cases("a:b", "a")) == 22


def test_text_at_the_limit_is_stored(stack: Stack) -> None:
    """Text of exactly TEXT_MAX_BYTES bytes (2-byte characters) is accepted whole."""
    chat, a, _ = fresh_chat()
    text = "é" * (TEXT_LIMIT // 2)
    body = orjson.dumps({"chat": chat, "sender": a, "text": text})
    status, answer, _ = http_call(stack.base, "POST", "/api/send", body, JSON)
    assert status == 200, answer
    assert [m["text"] for m in stored(stack, chat)] == [text]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=1&limit=abc", None),  # first value wins: limit=1
        ("limit=abc&limit=1", "limit"),
        ("cursor=99999999999999999999999", "cursor"),
        ("cursor=1.0", "cursor"),
        ("cursor=%2B1", "cursor"),  # "+1"
        ("cursor=%201", "cursor"),  # " 1"
        ("limit=0x10", "limit"),
        ("reverse=tru", "reverse"),
        ("x=%ff", "query"),
    ],
)
def test_hostile_pull(stack: Stack, query: str, field: str | None) -> None:
    """Repeated, oversized, signed, spaced and non-decimal values are 400s (first value wins)."""
    chat, _, _ = fresh_chat()
    status, answer, _ = http_call(stack.base, "GET", f"/api/pull?chat={chat}&{query}")
    if field is None:
        assert status == 200, answer
    else:
        assert status == 400, answer
        assert answer["msg"].startswith(field), answer


def test_emoji_members_round_trip(stack: Stack) -> None:
    """Unicode and emoji member names are stored and returned exactly, canonically ordered."""
    tag = uuid.uuid4().hex[:4]
    a, b = f"😀{tag}", f"Ωμέγα{tag}"
    body = orjson.dumps({"sender": a, "receiver": b, "text": "👋"})
    status, answer, _ = http_call(stack.base, "POST", "/api/send", body, JSON)
    assert status == 200, answer
    assert answer["chat"] == f"{b}:{a}"  # 'Ω' (U+03A9) sorts before '😀'
    assert [(m["sender"], m["text"]) for m in stored(stack, f"{a}:{b}")] == [(a, "👋")]
