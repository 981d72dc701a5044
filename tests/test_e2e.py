"""The public API end to end: front end -> RPC service -> Redis, real processes."""

from __future__ import annotations

import asyncio
import io
import socket
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from launcher.stack import Stack


@pytest.fixture
async def http(stack: Stack) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(stack.base) as session:
        yield session


def new_chat() -> tuple[str, str]:
    tag = uuid.uuid4().hex[:8]
    return f"x{tag}", f"y{tag}"


async def call(
    http: aiohttp.ClientSession, method: str, path: str, **kwargs: Any
) -> tuple[int, dict[str, Any]]:
    async with http.request(method, path, **kwargs) as resp:
        assert resp.content_type == "application/json", await resp.text()
        return resp.status, await resp.json()


async def send(http: aiohttp.ClientSession, **fields: Any) -> dict[str, Any]:
    status, body = await call(http, "POST", "/api/send", json=fields)
    assert status == 200, body
    return body


def assert_error(status: int, body: dict[str, Any], expected: int, field: str = "") -> None:
    assert status == expected, body
    assert set(body) == {"code", "msg"} and body["code"] != 0, body
    assert body["msg"].startswith(field), body


async def test_ping(http: aiohttp.ClientSession) -> None:
    """GET /ping answers pong."""
    assert await call(http, "GET", "/ping") == (200, {"message": "pong"})


async def test_send_both_spellings_one_chat(http: aiohttp.ClientSession) -> None:
    """'b:a' and 'a:b' are one conversation, answered in canonical spelling."""
    a, b = new_chat()
    one = await send(http, chat=f"{b}:{a}", sender=b, text="first")
    two = await send(http, chat=f"{a}:{b}", sender=a, text="second")
    assert one["chat"] == two["chat"] == f"{a}:{b}"
    assert two["send_time"] > one["send_time"]
    status, page = await call(http, "GET", "/api/pull", params={"chat": f"{b}:{a}"})
    assert status == 200
    assert page["messages"] == [
        {"chat": f"{a}:{b}", "text": "first", "sender": b, "send_time": one["send_time"]},
        {"chat": f"{a}:{b}", "text": "second", "sender": a, "send_time": two["send_time"]},
    ]
    assert (page["has_more"], page["next_cursor"]) == (False, 0)


async def test_every_parameter_source(http: aiohttp.ClientSession) -> None:
    """Query, urlencoded form, multipart form, JSON body and curl -d JSON all send."""
    a, b = new_chat()
    chat = f"{a}:{b}"
    status, _ = await call(
        http, "POST", "/api/send", params={"chat": chat, "sender": a, "text": "q"}
    )
    assert status == 200
    status, _ = await call(http, "POST", "/api/send", data={"chat": chat, "sender": a, "text": "f"})
    assert status == 200
    form = aiohttp.FormData({"chat": chat, "sender": a, "text": "m"})
    form._is_multipart = True
    status, _ = await call(http, "POST", "/api/send", data=form)
    assert status == 200
    status, _ = await call(http, "POST", "/api/send", json={"chat": chat, "sender": a, "text": "j"})
    assert status == 200
    curl_d = f'{{"chat": "{chat}", "sender": "{a}", "text": "c"}}'
    status, _ = await call(
        http,
        "POST",
        "/api/send",
        data=curl_d,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert status == 200
    status, page = await call(http, "GET", "/api/pull", json={"chat": chat, "limit": 10})
    assert [m["text"] for m in page["messages"]] == ["q", "f", "m", "j", "c"]


async def test_body_wins_over_form_over_query(http: aiohttp.ClientSession) -> None:
    """A field in the JSON body overrides the query's; a form field overrides the query's."""
    a, b = new_chat()
    chat = f"{a}:{b}"
    for text in ("1", "2", "3"):
        await send(http, chat=chat, sender=a, text=text)
    status, page = await call(
        http, "GET", "/api/pull", params={"chat": chat, "limit": "1"}, json={"limit": 2}
    )
    assert status == 200 and len(page["messages"]) == 2
    status, _ = await call(
        http,
        "POST",
        "/api/send",
        params={"chat": chat, "sender": a, "text": "query"},
        data={"text": "form"},
    )
    assert status == 200
    status, page = await call(
        http, "GET", "/api/pull", params={"chat": chat, "reverse": "1", "limit": 1}
    )
    assert page["messages"][0]["text"] == "form"


async def test_sender_receiver_instead_of_chat(http: aiohttp.ClientSession) -> None:
    """sender + receiver form the chat; a disagreeing receiver is a 400."""
    a, b = new_chat()
    body = await send(http, sender=b, receiver=a, text="hi")
    assert body["chat"] == f"{a}:{b}" and body["sender"] == b
    status, err = await call(
        http,
        "POST",
        "/api/send",
        json={"chat": f"{a}:{b}", "sender": a, "receiver": "z", "text": "x"},
    )
    assert_error(status, err, 400, "receiver")


async def test_paging_forward_and_reverse_exactly_once(http: aiohttp.ClientSession) -> None:
    """Walking 23 messages by 5 in both directions returns each once, in order."""
    a, b = new_chat()
    chat = f"{a}:{b}"
    times = [(await send(http, chat=chat, sender=a, text=str(i)))["send_time"] for i in range(23)]
    for reverse, expected in ((False, times), (True, times[::-1])):
        seen: list[int] = []
        cursor = 0
        while True:
            params = {"chat": chat, "limit": 5, "cursor": cursor, "reverse": str(reverse).lower()}
            status, page = await call(http, "GET", "/api/pull", params=params)
            assert status == 200
            seen += [m["send_time"] for m in page["messages"]]
            if not page["has_more"]:
                assert page["next_cursor"] == 0
                break
            cursor = page["next_cursor"]
        assert seen == expected


async def test_concurrent_sends_distinct_times(http: aiohttp.ClientSession) -> None:
    """10 concurrent sends to one chat get 10 distinct send_times, stored in that order."""
    a, b = new_chat()
    chat = f"{a}:{b}"
    bodies = await asyncio.gather(
        *(send(http, chat=chat, sender=b, text=f"c{i}") for i in range(10))
    )
    times = sorted(body["send_time"] for body in bodies)
    assert len(set(times)) == 10
    _, page = await call(http, "GET", "/api/pull", params={"chat": chat, "limit": 100})
    assert [m["send_time"] for m in page["messages"]] == times


async def test_idempotency_key(http: aiohttp.ClientSession) -> None:
    """A retried send with the same Idempotency-Key stores once and returns the first send_time."""
    a, b = new_chat()
    chat = f"{a}:{b}"
    key = uuid.uuid4().hex
    fields = {"chat": chat, "sender": a, "text": "pay"}
    first = await call(http, "POST", "/api/send", json=fields, headers={"Idempotency-Key": key})
    again = await call(http, "POST", "/api/send", json={**fields, "client_msg_id": key})
    assert first[0] == again[0] == 200
    assert again[1]["send_time"] == first[1]["send_time"]
    assert (first[1]["duplicate"], again[1]["duplicate"]) == (False, True)
    _, page = await call(http, "GET", "/api/pull", params={"chat": chat})
    assert len(page["messages"]) == 1


async def test_empty_text_and_unicode(http: aiohttp.ClientSession) -> None:
    """Empty text is allowed; emoji members and text come back exactly."""
    a, b = "😀" + uuid.uuid4().hex[:6], "Zoë"
    await send(http, sender=a, receiver=b, text="")
    await send(http, sender=b, receiver=a, text="ça va? 👍\n")
    _, page = await call(http, "GET", "/api/pull", params={"chat": f"{a}:{b}"})
    assert [m["text"] for m in page["messages"]] == ["", "ça va? 👍\n"]
    assert page["messages"][0]["chat"] == f"{b}:{a}"  # 'Z' < '😀'


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"json": {"sender": "a", "text": "x"}}, "chat"),
        ({"json": {"chat": "a:b", "text": "x"}}, "sender"),
        ({"json": {"chat": "a:b", "sender": "a"}}, "text"),
        ({"json": {"chat": "a:b", "sender": "c", "text": "x"}}, "sender"),
        ({"json": {"chat": "a:b:c", "sender": "a", "text": "x"}}, "chat"),
        ({"json": {"chat": "a:" + "b" * 129, "sender": "a", "text": "x"}}, "chat"),
        ({"json": {"chat": "a:b", "sender": "a", "text": "x" * 65537}}, "text"),
        ({"json": {"chat": "a:b", "sender": "a", "text": 1}}, "text"),
        ({"data": b"[1]", "headers": {"Content-Type": "application/json"}}, "body"),
        ({"data": b"{nope", "headers": {"Content-Type": "application/json"}}, "body"),
        ({"data": b'{"text": "\xff"}', "headers": {"Content-Type": "application/json"}}, "body"),
        (
            {
                "params": {"chat": "a:b", "sender": "a", "text": "%ff"},
                "data": "text=%ff",
                "headers": {"Content-Type": "application/x-www-form-urlencoded"},
            },
            "body",
        ),
    ],
)
async def test_send_errors(http: aiohttp.ClientSession, kwargs: dict[str, Any], field: str) -> None:
    """Bad sends are 400 JSON errors naming the field."""
    status, body = await call(http, "POST", "/api/send", **kwargs)
    assert_error(status, body, 400, field)


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({}, "chat"),
        ({"chat": "nocolon"}, "chat"),
        ({"chat": "a:b", "limit": "1001"}, "limit"),
        ({"chat": "a:b", "limit": "1.5"}, "limit"),
        ({"chat": "a:b", "cursor": "-1"}, "cursor"),
        ({"chat": "a:b", "cursor": "1e3"}, "cursor"),
        ({"chat": "a:b", "cursor": str(2**63)}, "cursor"),
        ({"chat": "a:b", "reverse": "maybe"}, "reverse"),
    ],
)
async def test_pull_errors(http: aiohttp.ClientSession, params: dict[str, str], field: str) -> None:
    """Bad pulls are 400 JSON errors naming the field."""
    status, body = await call(http, "GET", "/api/pull", params=params)
    assert_error(status, body, 400, field)


async def test_a_4xx_stores_nothing(http: aiohttp.ClientSession) -> None:
    """A send refused with 400 leaves the chat unchanged."""
    a, b = new_chat()
    chat = f"{a}:{b}"
    status, _ = await call(
        http, "POST", "/api/send", json={"chat": chat, "sender": a, "text": "x" * 70000}
    )
    assert status == 400
    status, page = await call(http, "GET", "/api/pull", params={"chat": chat})
    assert page["messages"] == []


async def test_unknown_path_and_wrong_method(http: aiohttp.ClientSession) -> None:
    """404 for an unknown path, 405 for a wrong method, both JSON."""
    status, body = await call(http, "GET", "/api/nothing")
    assert_error(status, body, 404)
    for method, path in (("GET", "/api/send"), ("POST", "/api/pull"), ("DELETE", "/ping")):
        status, body = await call(http, method, path)
        assert_error(status, body, 405)


async def test_body_over_limit(http: aiohttp.ClientSession) -> None:
    """A body over 1 MiB is a 413 JSON error."""
    status, body = await call(http, "POST", "/api/send", data=io.BytesIO(b"x" * (1024 * 1024 + 1)))
    assert_error(status, body, 413)


async def test_unsupported_media_type(http: aiohttp.ClientSession) -> None:
    """A plain-text body is a 415 JSON error."""
    status, body = await call(
        http, "POST", "/api/send", data=b"hello", headers={"Content-Type": "text/plain"}
    )
    assert_error(status, body, 415, "body")


def raw_exchange(base: str, data: bytes, timeout: float = 5.0) -> bytes:
    url = urlsplit(base)
    with socket.create_connection((url.hostname, url.port), timeout=timeout) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 10000 + b"\r\n\r\n", b"431"),
        (b"GET /ping HTTP/1.1\r\n" + b"X-Many: a\r\n" * 1000 + b"\r\n", b"431"),
        (b"GET /api/pull?chat=" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", b"414"),
        (b"GET /api/pull?chat=" + b"a" * 20000, b"414"),
        (
            b"POST /api/send HTTP/1.1\r\nHost: x\r\n"
            b"Content-Length: 5\r\nContent-Length: 7\r\n\r\nhello",
            b"400",
        ),
        (b"GET /api/pull?chat=a:b&x=\xff HTTP/1.1\r\nHost: x\r\n\r\n", b"400"),
        (b"NONSENSE\r\n\r\n", b"400"),
        (b"POST /api/send HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", b"400"),
    ],
)
def test_http_level_errors_are_json_and_close(
    stack: Stack, request_bytes: bytes, status: bytes
) -> None:
    """Bad framing, long request lines, big heads and non-ASCII URLs: JSON error, then closed."""
    answer = raw_exchange(stack.base, request_bytes)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b" ")[1] == status, answer
    assert b"connection: close" in head.lower()
    assert body.startswith(b'{"code":' + status)


def test_slow_client_is_cut_off(stack: Stack) -> None:
    """A client that trickles its request past REQUEST_TIMEOUT gets 408 and a closed socket."""
    url = urlsplit(stack.base)
    timeout = float(stack.env["REQUEST_TIMEOUT"])
    with socket.create_connection((url.hostname, url.port), timeout=timeout + 5) as sock:
        started = time.monotonic()
        sock.sendall(b"POST /api/send HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408"), answer
    assert timeout - 0.5 <= elapsed <= timeout + 3
    # Meanwhile everybody else was served.
    assert raw_exchange(
        stack.base, b"GET /ping HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    ).startswith(b"HTTP/1.1 200")


async def test_racing_retries_store_once(http: aiohttp.ClientSession) -> None:
    """20 concurrent sends with one Idempotency-Key: one message, one send_time for all."""
    a, b = new_chat()
    chat = f"{a}:{b}"
    key = uuid.uuid4().hex
    answers = await asyncio.gather(
        *(
            call(
                http,
                "POST",
                "/api/send",
                json={"chat": chat, "sender": a, "text": "once"},
                headers={"Idempotency-Key": key},
            )
            for _ in range(20)
        )
    )
    assert {status for status, _ in answers} == {200}
    assert len({body["send_time"] for _, body in answers}) == 1
    assert sum(not body["duplicate"] for _, body in answers) == 1
    _, page = await call(http, "GET", "/api/pull", params={"chat": chat})
    assert [m["text"] for m in page["messages"]] == ["once"]


@pytest.mark.parametrize(
    "head",
    [
        b"GET /ping HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{",
        b"GET /docs/openapi.json HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{",
        b"GET /api/pull?chat=a:b HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{",
        b"GET /ping HTTP/1.1\r\nHost: x\r\nX-Slow: ",  # headers that never end
    ],
)
def test_trickling_client_is_cut_off_on_time(stack: Stack, head: bytes) -> None:
    """A byte a second does not keep a request alive past REQUEST_TIMEOUT."""
    url = urlsplit(stack.base)
    timeout = float(stack.env["REQUEST_TIMEOUT"])
    with socket.create_connection((url.hostname, url.port), timeout=1) as sock:
        started = time.monotonic()
        sock.sendall(head)
        answer = b""
        while time.monotonic() - started < timeout + 5:
            try:
                sock.sendall(b"a")
            except OSError:
                break
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                break
            if not chunk:
                break
            answer += chunk
            time.sleep(0.3)
        elapsed = time.monotonic() - started
    assert elapsed <= timeout + 3, elapsed
    assert answer.startswith(b"HTTP/1.1 408"), answer
