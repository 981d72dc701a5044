"""The OpenAPI document: valid, complete against the app's routes, served verbatim, true."""

from __future__ import annotations

import http.client
import re
import uuid
from collections.abc import Iterator
from functools import cache
from importlib.resources import files
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import orjson
import pytest
from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4
from sanic import Sanic

from contract import chats_cursor
from contract.chat import ChatError, check_member, split_chat
from contract.chats_cursor import ChatsCursor
from http_srv.app import create_app
from http_srv.errors import ApiError
from http_srv.params import (
    chats_params,
    pull_params,
    read_params,
    send_params,
    since_param,
    wait_param,
)
from http_srv.routes import DOCS_ASSETS_ROUTE
from http_srv.settings import Settings
from launcher.stack import Stack
from tests.client import http_call

DOC_BYTES = files("http_srv").joinpath("openapi.json").read_bytes()
DOC: dict[str, Any] = orjson.loads(DOC_BYTES)
DOC_URI = "https://pullchat.invalid/openapi.json"
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
COMMON_STATUSES = {"200", "400", "404", "405", "408", "413", "414", "431"}
API_STATUSES = COMMON_STATUSES | {"415", "502", "503", "504"}


def pointer(*parts: str) -> str:
    """A JSON pointer (RFC 6901) into the document."""
    return "".join("/" + p.replace("~", "~0").replace("/", "~1") for p in parts)


def resolve(node: Any) -> Any:
    """Follow a local OpenAPI ``$ref`` (responses, parameters) to its target."""
    while isinstance(node, dict) and "$ref" in node:
        target: Any = DOC
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


@cache
def validator_at(ptr: str) -> Any:
    """A validator for the schema at `ptr`; its ``$ref``s resolve inside the document."""
    resource = Resource.from_contents(DOC, default_specification=DRAFT4)
    registry: Registry[Any] = Registry().with_resource(DOC_URI, resource)
    return OAS30Validator({"$ref": f"{DOC_URI}#{ptr}"}, registry=registry)


def is_valid(ptr: str, instance: Any) -> bool:
    return bool(validator_at(ptr).is_valid(instance))


def response_schema_pointer(path: str, method: str, status: int) -> str:
    """Where the documented JSON schema of one answer is (following a response $ref)."""
    response = DOC["paths"][path][method.lower()]["responses"][str(status)]
    parts = ["paths", path, method.lower(), "responses", str(status)]
    if "$ref" in response:
        parts = response["$ref"].removeprefix("#/").split("/")
    assert "application/json" in resolve(response)["content"], (path, method, status)
    return pointer(*parts, "content", "application/json", "schema")


def assert_conforms(path: str, method: str, status: int, body: Any) -> None:
    errors = list(validator_at(response_schema_pointer(path, method, status)).iter_errors(body))
    assert not errors, f"{method} {path} {status}: {body!r} breaks the document: {errors[0]}"


def operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in DOC["paths"].items():
        for method in HTTP_METHODS:
            if method in item:
                yield path, method, item[method]


# The document itself.


def test_document_is_valid_openapi_3_0_3() -> None:
    """openapi-spec-validator accepts the document, and it is OpenAPI 3.0.3."""
    assert DOC["openapi"] == "3.0.3"
    validate(DOC)


def test_every_example_matches_its_schema() -> None:
    """Examples of schemas, parameters, bodies and answers all follow their own schemas."""
    checked = 0

    def walk(node: Any, parts: tuple[str, ...]) -> None:
        nonlocal checked
        if isinstance(node, dict):
            if "schema" in node and ("example" in node or "examples" in node):
                values = [node["example"]] if "example" in node else []
                values += [resolve(ex)["value"] for ex in node.get("examples", {}).values()]
                for value in values:
                    errors = list(validator_at(pointer(*parts, "schema")).iter_errors(value))
                    assert not errors, f"{pointer(*parts)}: {value!r}: {errors[0]}"
                    checked += 1
            for key, child in node.items():
                walk(child, (*parts, key))
        elif isinstance(node, list):
            for index, child in enumerate(node):
                walk(child, (*parts, str(index)))

    walk(DOC, ())
    for name, schema in DOC["components"]["schemas"].items():
        if "example" in schema:
            ptr = pointer("components", "schemas", name)
            assert is_valid(ptr, schema["example"]), (name, schema["example"])
            checked += 1
    assert checked >= 30


def test_every_operation_documents_every_error_status() -> None:
    """Each operation lists every status the server can answer it with, errors as Error."""
    ids = [op["operationId"] for _, _, op in operations()]
    assert len(ids) == len(set(ids)) == 9
    for path, method, op in operations():
        statuses = set(op["responses"])
        expected = API_STATUSES if path.startswith("/api/") else COMMON_STATUSES
        assert statuses == expected, (path, method, sorted(statuses ^ expected))
        for status in statuses - {"200"}:
            ptr = response_schema_pointer(path, method, int(status))
            assert is_valid(ptr, {"code": int(status), "msg": "what was wrong"})
            assert not is_valid(ptr, {"code": 0, "msg": "what was wrong"})
            assert not is_valid(ptr, {"code": 418, "msg": "what was wrong"})
            assert not is_valid(ptr, {"code": int(status), "msg": "x", "extra": 1})
            assert not is_valid(ptr, {"code": int(status)})


def test_send_documents_every_field_source() -> None:
    """Send: the five fields in the query, the header, and the three body formats."""
    op = DOC["paths"]["/api/send"]["post"]
    params = {(p["in"], p["name"]) for p in map(resolve, op["parameters"])}
    fields = {"chat", "sender", "receiver", "text", "client_msg_id"}
    headers = {("header", "Idempotency-Key"), ("header", "X-Request-Id")}
    assert params == {("query", f) for f in fields} | headers
    content = op["requestBody"]["content"]
    assert set(content) == {
        "application/json",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    }
    for media in content.values():
        assert set(resolve(media["schema"])["properties"]) == fields


@pytest.mark.parametrize(
    ("path", "method", "fields"),
    [
        ("/api/pull", "get", {"chat", "cursor", "limit", "reverse", "wait"}),
        ("/api/chats", "get", {"user", "limit", "cursor", "wait", "since"}),
        ("/api/read", "post", {"chat", "user", "send_time"}),
    ],
)
def test_operations_document_every_field_source(path: str, method: str, fields: set[str]) -> None:
    """Pull, chats and read: each field in the query and in the three body formats."""
    op = DOC["paths"][path][method]
    params = {(p["in"], p["name"]) for p in map(resolve, op["parameters"])}
    assert params == {("query", f) for f in fields} | {("header", "X-Request-Id")}
    content = op["requestBody"]["content"]
    assert set(content) == {
        "application/json",
        "application/x-www-form-urlencoded",
        "multipart/form-data",
    }
    for media in content.values():
        assert set(resolve(media["schema"])["properties"]) == fields, (path, media)


def test_every_operation_documents_the_request_id() -> None:
    """X-Request-Id: an optional header of every operation, a header of every answer."""
    for path, ops in DOC["paths"].items():
        for method, op in ops.items():
            params = {(p["in"], p["name"]) for p in map(resolve, op["parameters"])}
            assert ("header", "X-Request-Id") in params, (path, method)
            for status, response in op["responses"].items():
                headers = resolve(response).get("headers", {})
                assert "X-Request-Id" in headers, (path, method, status)


# The document against the app.


@pytest.fixture
def app_routes(monkeypatch: pytest.MonkeyPatch) -> set[tuple[str, str]]:
    """(path, METHOD) of every route of a freshly built app.

    Sanic refuses a second app with a name already registered in the process;
    an empty registry for this test only (restored afterwards) avoids that
    without leaving the new app registered for other tests.
    """
    monkeypatch.setattr(Sanic, "_app_registry", {})
    app = create_app(Settings())
    routes = set()
    for route in app.router.routes:
        if route.name.endswith(DOCS_ASSETS_ROUTE) or route.path.startswith("web/"):
            continue  # Swagger UI's and the chat page's own files, not part of the API
        # Sanic spells a path without its leading '/' and parameters as <name:type>.
        path = "/" + re.sub(r"<([^:>]+)(:[^>]*)?>", r"{\1}", route.path)
        routes |= {(path, method.upper()) for method in route.methods}
    return routes


def test_routes_and_document_agree(app_routes: set[tuple[str, str]]) -> None:
    """Every route of the app is documented with its methods, and nothing more."""
    documented = {(path, method.upper()) for path, method, _ in operations()}
    assert app_routes
    assert documented == app_routes, sorted(documented ^ app_routes)


# The document against the running server.


def test_served_document_is_the_file(stack: Stack) -> None:
    """GET /docs/openapi.json serves the file byte for byte, as JSON."""
    status, body, _ = http_call(stack.base, "GET", "/docs/openapi.json")
    assert status == 200 and body == DOC
    url = urlsplit(stack.base)
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=10)
    try:
        conn.request("GET", "/docs/openapi.json")
        resp = conn.getresponse()
        raw = resp.read()
    finally:
        conn.close()
    assert resp.status == 200
    assert resp.getheader("content-type") == "application/json"
    assert raw == DOC_BYTES


def query(**fields: Any) -> str:
    return urlencode(fields, quote_via=quote)


def test_real_answers_follow_the_document(stack: Stack, chat: str) -> None:
    """A send, a duplicate, pulls with messages, ping and errors all match their schemas."""
    alice, bob = chat.split(":")
    json_headers = {"Content-Type": "application/json"}
    key = uuid.uuid4().hex
    send = orjson.dumps({"chat": f"{bob}:{alice}", "sender": bob, "text": "hi ✓"})

    status, body, _ = http_call(
        stack.base, "POST", "/api/send", send, {**json_headers, "Idempotency-Key": key}
    )
    assert status == 200, body
    assert_conforms("/api/send", "POST", 200, body)
    assert (body["chat"], body["duplicate"]) == (chat, False)
    first_time = body["send_time"]

    status, body, _ = http_call(
        stack.base, "POST", "/api/send", send, {**json_headers, "Idempotency-Key": key}
    )
    assert status == 200
    assert_conforms("/api/send", "POST", 200, body)
    assert (body["send_time"], body["duplicate"]) == (first_time, True)

    form = query(sender=alice, receiver=bob, text="")
    status, body, _ = http_call(
        stack.base,
        "POST",
        "/api/send",
        form.encode(),
        {"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert status == 200, body
    assert_conforms("/api/send", "POST", 200, body)

    status, body, _ = http_call(stack.base, "GET", "/api/pull?" + query(chat=chat, limit=1))
    assert status == 200, body
    assert_conforms("/api/pull", "GET", 200, body)
    assert len(body["messages"]) == 1 and body["has_more"] is True
    assert body["messages"][0]["send_time"] == first_time

    pull_body = orjson.dumps({"chat": chat, "reverse": True, "limit": 10})
    status, body, _ = http_call(stack.base, "GET", "/api/pull", pull_body, json_headers)
    assert status == 200, body
    assert_conforms("/api/pull", "GET", 200, body)
    assert [m["text"] for m in body["messages"]] == ["", "hi ✓"]
    assert (body["has_more"], body["next_cursor"]) == (False, 0)

    status, body, _ = http_call(stack.base, "GET", "/ping")
    assert status == 200
    assert_conforms("/ping", "GET", 200, body)

    status, body, _ = http_call(stack.base, "GET", "/docs/openapi.json")
    assert_conforms("/docs/openapi.json", "GET", 200, body)


def test_real_conversation_answers_follow_the_document(stack: Stack) -> None:
    """Chats pages (first, next, none, after a wait) and read receipts match their schemas."""
    tag = uuid.uuid4().hex[:8]
    alice, bob, carol = (f"{name}-{tag}" for name in ("alice", "bob", "carol"))
    json_headers = {"Content-Type": "application/json"}

    def send(chat: str, sender: str, text: str) -> int:
        body = orjson.dumps({"chat": chat, "sender": sender, "text": text})
        status, answer, _ = http_call(stack.base, "POST", "/api/send", body, json_headers)
        assert status == 200, answer
        return int(answer["send_time"])

    def call(method: str, path: str, body: bytes | None = None, **fields: Any) -> Any:
        target = f"{path}?{query(**fields)}" if fields else path
        status, answer, _ = http_call(
            stack.base, method, target, body, json_headers if body else {}, timeout=10
        )
        assert status == 200, answer
        assert_conforms(path, method, 200, answer)
        return answer

    send(f"{bob}:{alice}", bob, "hi")
    carol_time = send(f"{alice}:{carol}", carol, "yo")
    newest = send(f"{alice}:{bob}", bob, "still there?")

    first = call("GET", "/api/chats", user=alice, limit=1)
    assert [c["chat"] for c in first["chats"]] == [f"{alice}:{bob}"]
    entry = first["chats"][0]
    assert (entry["peer"], entry["unread"], entry["read_cursor"]) == (bob, 2, 0)
    assert entry["last_message"]["send_time"] == newest == first["latest_activity"]
    assert first["has_more"] is True and first["next_cursor"]

    body = orjson.dumps({"user": alice, "limit": 1, "cursor": first["next_cursor"]})
    last = call("GET", "/api/chats", body)
    assert [c["chat"] for c in last["chats"]] == [f"{alice}:{carol}"]
    assert (last["has_more"], last["next_cursor"], last["latest_activity"]) == (False, "", newest)

    bobs = call("GET", "/api/chats", user=bob)
    assert [(c["peer"], c["unread"], c["read_cursor"]) for c in bobs["chats"]] == [
        (alice, 0, newest)
    ]
    nobody = call("GET", "/api/chats", user=f"nobody-{tag}")
    assert (nobody["chats"], nobody["latest_activity"], nobody["next_cursor"]) == ([], 0, "")

    read = call("POST", "/api/read", chat=f"{bob}:{alice}", user=alice, send_time=newest)
    assert (read["chat"], read["user"], read["read_cursor"], read["unread"]) == (
        f"{alice}:{bob}",
        alice,
        newest,
        0,
    )
    again = call(
        "POST", "/api/read", orjson.dumps({"chat": read["chat"], "user": alice, "send_time": 1})
    )
    assert (again["read_cursor"], again["unread"]) == (newest, 0)  # never back
    past = call("POST", "/api/read", chat=f"{alice}:{carol}", user=alice, send_time=2**63 - 1)
    assert (past["read_cursor"], past["unread"]) == (carol_time, 0)  # never past the newest

    target = "/api/chats?" + query(user=alice, wait=1, since=newest)
    status, waited, seconds = http_call(stack.base, "GET", target)
    assert status == 200, waited
    assert_conforms("/api/chats", "GET", 200, waited)
    assert seconds >= 0.9, "nothing newer than since: held for the whole wait"
    assert [(c["chat"], c["unread"]) for c in waited["chats"]] == [
        (f"{alice}:{bob}", 0),
        (f"{alice}:{carol}", 0),
    ]
    assert waited["latest_activity"] == newest


@pytest.mark.parametrize(
    ("target", "field"),
    [
        ("/api/chats", "user"),
        ("/api/chats?user=a&limit=0", "limit"),
        ("/api/chats?user=a&limit=101", "limit"),
        ("/api/chats?user=a&cursor=abc", "cursor"),
        ("/api/chats?user=a&since=-1", "since"),
        ("/api/chats?user=a&wait=1.5", "wait"),
    ],
)
def test_chats_errors_name_their_field(stack: Stack, target: str, field: str) -> None:
    """A refused conversation list request is a documented 400 whose msg names the field."""
    status, answer, _ = http_call(stack.base, "GET", target)
    assert status == 400, answer
    assert_conforms("/api/chats", "GET", 400, answer)
    assert answer["msg"].startswith(f"{field}: "), answer


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"user": "a", "send_time": 1}, "chat"),
        ({"chat": "a:b", "send_time": 1}, "user"),
        ({"chat": "a:b", "user": "c", "send_time": 1}, "user"),
        ({"chat": "a:b", "user": "a"}, "send_time"),
        ({"chat": "a:b", "user": "a", "send_time": -1}, "send_time"),
        ({"chat": "a:b", "user": "a", "send_time": "1.5"}, "send_time"),
    ],
)
def test_read_errors_name_their_field(stack: Stack, fields: dict[str, Any], field: str) -> None:
    """A refused read receipt is a documented 400 whose msg names the field."""
    body = orjson.dumps(fields)
    headers = {"Content-Type": "application/json"}
    status, answer, _ = http_call(stack.base, "POST", "/api/read", body, headers)
    assert status == 400, answer
    assert_conforms("/api/read", "POST", 400, answer)
    assert answer["msg"].startswith(f"{field}: "), answer


@pytest.mark.parametrize(
    ("method", "target", "body", "headers", "status", "documented"),
    [
        ("GET", "/api/pull", None, {}, 400, ("/api/pull", "GET")),
        ("GET", "/api/pull?chat=a:b&limit=1001", None, {}, 400, ("/api/pull", "GET")),
        ("POST", "/api/send", b"[1]", {"Content-Type": "application/json"}, 400, None),
        ("GET", "/api/nothing", None, {}, 404, None),
        ("POST", "/api/pull", None, {}, 405, ("/api/pull", "GET")),
        ("GET", "/api/send", None, {}, 405, ("/api/send", "POST")),
        ("GET", "/api/chats?limit=0", None, {}, 400, ("/api/chats", "GET")),
        ("POST", "/api/read?chat=a:b&user=c&send_time=1", None, {}, 400, ("/api/read", "POST")),
        ("POST", "/api/chats?user=a", None, {}, 405, ("/api/chats", "GET")),
        ("GET", "/api/read", None, {}, 405, ("/api/read", "POST")),
        ("POST", "/api/read", b"x", {"Content-Type": "text/plain"}, 415, ("/api/read", "POST")),
        ("DELETE", "/ping", None, {}, 405, ("/ping", "GET")),
        ("POST", "/api/send", b"", {"Content-Length": str(2 * 1024 * 1024)}, 413, None),
        ("POST", "/api/send", b"hello", {"Content-Type": "text/plain"}, 415, None),
    ],
)
def test_real_errors_follow_the_document(
    stack: Stack,
    method: str,
    target: str,
    body: bytes | None,
    headers: dict[str, str],
    status: int,
    documented: tuple[str, str] | None,
) -> None:
    """Each error answer matches the Error schema documented for its status.

    Without a particular operation (an unknown path, a body refused before
    routing) it must match that status's schema on every operation listing it.
    """
    got, answer, _ = http_call(stack.base, method, target, body, headers)
    assert got == status, answer
    assert answer["code"] == status
    places = [documented] if documented else [(p, m) for p, m, _ in operations()]
    checked = 0
    for path, op_method in places:
        if str(status) in DOC["paths"][path][op_method.lower()]["responses"]:
            assert_conforms(path, op_method, status, answer)
            checked += 1
    assert checked


# The schemas against the server's own rules: never stricter, and they catch what they claim.

MEMBER_SAMPLES = [
    "alice",
    "Zoë",
    "😀" * 128,
    "a" * 128,
    "with space",
    "x\u00a0y",
    "",
    "a" * 129,
    "😀" * 129,
    "a:b",
    "tab\there",
    "del\x7f",
    "c1\x85",
    "   ",
]


@pytest.mark.parametrize("member", MEMBER_SAMPLES)
def test_member_schema_never_stricter_than_the_server(member: str) -> None:
    """A member the server accepts passes the schema; ':', controls, lengths are caught."""
    try:
        check_member(member)
        accepted = True
    except ChatError:
        accepted = False
    in_schema = is_valid(pointer("components", "schemas", "Member"), member)
    if accepted:
        assert in_schema, member
    elif not member.isspace():  # blank names are described, not encoded
        assert not in_schema, member


@pytest.mark.parametrize(
    "chat", ["alice:bob", "b:a", "😀:Zoë", "a" * 128 + ":b", "a:b:c", "ab", ":b", "a:", "a\n:b"]
)
def test_chat_schema_matches_the_server(chat: str) -> None:
    """The Chat schema accepts exactly the chats the server's split_chat accepts (here)."""
    try:
        split_chat(chat)
        accepted = True
    except ChatError:
        accepted = False
    assert is_valid(pointer("components", "schemas", "Chat"), chat) == accepted


@pytest.mark.parametrize(
    "fields",
    [
        {"chat": "a:b"},
        {"chat": "a:b", "cursor": 0, "limit": 0, "reverse": False},
        {"chat": "a:b", "cursor": 2**63 - 1, "limit": 1000, "reverse": True},
        {"chat": "a:b", "cursor": "", "limit": "10", "reverse": "TRUE"},
        {"chat": "a:b", "cursor": None, "limit": None, "reverse": None},
        {"chat": "a:b", "reverse": 1},
        {"chat": "a:b", "reverse": "0"},
        {"chat": "a:b", "cursor": 2**63},
        {"chat": "a:b", "cursor": -1},
        {"chat": "a:b", "limit": 1001},
        {"chat": "a:b", "limit": ""},
        {"chat": "a:b", "limit": "1e3"},
        {"chat": "a:b", "reverse": "maybe"},
        {"chat": "a:b", "reverse": 2},
        {"chat": "a:b:c"},
        {"chat": 5},
        {"chat": "a:b", "wait": 0},
        {"chat": "a:b", "wait": 25},
        {"chat": "a:b", "wait": 10**30},
        {"chat": "a:b", "wait": None},
        {"chat": "a:b", "wait": -1},
        {"chat": "a:b", "wait": 1.5},
        {"chat": "a:b", "wait": "25"},
        {"chat": "a:b", "wait": True},
    ],
)
def test_pull_body_schema_never_stricter_than_the_server(fields: dict[str, Any]) -> None:
    """A JSON pull body the server accepts passes the schema, and these refusals are caught."""
    try:
        given = {k: v for k, v in fields.items() if v is not None}
        pull_params(given)
        wait_param(given, 30)
        accepted = True
    except ApiError:
        accepted = False
    assert is_valid(pointer("components", "schemas", "PullJsonBody"), fields) == accepted


@pytest.mark.parametrize(
    "fields",
    [
        {"chat": "a:b", "sender": "a", "text": ""},
        {"sender": "b", "receiver": "a", "text": "hi"},
        {"chat": "b:a", "sender": "a", "receiver": "b", "text": "x", "client_msg_id": "k:1"},
        {"chat": "a:b", "sender": "a", "text": "x", "receiver": None},
        {"chat": "a:b", "sender": "a", "text": 1},
        {"chat": "a:b", "sender": "a:", "text": "x"},
        {"chat": "a:b", "sender": "a", "text": "x", "client_msg_id": ""},
        {"chat": "a:b", "sender": "a", "text": "x", "client_msg_id": "k" * 129},
    ],
)
def test_send_body_schema_never_stricter_than_the_server(fields: dict[str, Any]) -> None:
    """A JSON send body the server accepts passes the schema, and these refusals are caught."""
    try:
        send_params({k: v for k, v in fields.items() if v is not None}, 65536)
        accepted = True
    except ApiError:
        accepted = False
    assert is_valid(pointer("components", "schemas", "SendJsonBody"), fields) == accepted


CURSOR_OF_A = chats_cursor.encode(ChatsCursor(1700000000123456, "a:b"))


@pytest.mark.parametrize(
    "fields",
    [
        {"user": "a"},
        {"user": "a", "limit": 1, "cursor": "", "wait": 0, "since": 0},
        {"user": "a", "limit": 100, "cursor": CURSOR_OF_A, "wait": 25, "since": 2**63 - 1},
        {"user": "a", "limit": "007", "wait": "99999999999999999999999", "since": "12"},
        {"user": "a", "limit": None, "cursor": None, "wait": None, "since": None},
        {"user": "a", "since": ""},
        {"user": "a", "wait": ""},
        {"user": ""},
        {"user": "a:b"},
        {"user": 5},
        {"user": "a", "limit": 0},
        {"user": "a", "limit": "0"},
        {"user": "a", "limit": 101},
        {"user": "a", "limit": ""},
        {"user": "a", "limit": 1.5},
        {"user": "a", "limit": True},
        {"user": "a", "cursor": 5},
        {"user": "a", "cursor": "a+b/"},
        {"user": "a", "cursor": "é"},
        {"user": "a", "since": -1},
        {"user": "a", "since": 2**63},
        {"user": "a", "since": "1.5"},
        {"user": "a", "since": True},
        {"user": "a", "wait": -1},
        {"user": "a", "wait": 1.5},
        {"user": "a", "wait": True},
    ],
)
def test_chats_body_schema_never_stricter_than_the_server(fields: dict[str, Any]) -> None:
    """A JSON chats body the server accepts passes the schema, and these refusals are caught."""
    try:
        given = {k: v for k, v in fields.items() if v is not None}
        chats_params(given)
        wait_param(given, 30)
        since_param(given)
        accepted = True
    except ApiError:
        accepted = False
    assert is_valid(pointer("components", "schemas", "ChatsJsonBody"), fields) == accepted


@pytest.mark.parametrize(
    "cursor",
    [
        "abc",
        "A" * 1394,
        chats_cursor.encode(ChatsCursor(1700000000123456, "b:c")),  # another member's list
        CURSOR_OF_A[:-1],  # a cursor cut short
        CURSOR_OF_A + "A",
    ],
)
def test_a_cursor_the_server_did_not_give_is_described_not_encoded(cursor: str) -> None:
    """A well-formed cursor passes the schema, but only one the server gave is accepted."""
    assert is_valid(
        pointer("components", "schemas", "ChatsJsonBody"), {"user": "a", "cursor": cursor}
    )
    with pytest.raises(ApiError) as refused:
        chats_params({"user": "a", "cursor": cursor})
    assert refused.value.msg.startswith("cursor: ")


LONGEST_ASCII = ("a" * 128, "b" * 128)
LONGEST_UTF8 = ("\U0010fffe" * 128, "\U0010ffff" * 128)


@pytest.mark.parametrize(
    "members",
    [
        ("alice", "bob"),
        LONGEST_ASCII,
        LONGEST_UTF8,
    ],
    ids=["short", "longest-ascii", "longest-utf8"],
)
def test_every_cursor_the_server_gives_passes_the_schema_and_back(members: tuple[str, str]) -> None:
    """next_cursor of the largest send_time and chat fits the schema, and is accepted back."""
    chat = ":".join(sorted(members))
    cursor = chats_cursor.encode(ChatsCursor(2**63 - 1, chat))
    assert is_valid(pointer("components", "schemas", "ChatsCursor"), cursor)
    assert is_valid(
        pointer("components", "schemas", "ChatsResponse") + "/properties/next_cursor", cursor
    )
    assert chats_params({"user": members[0], "cursor": cursor}).after == (2**63 - 1, chat)


@pytest.mark.parametrize(
    "fields",
    [
        {"chat": "a:b", "user": "a", "send_time": 0},
        {"chat": "b:a", "user": "b", "send_time": 2**63 - 1},
        {"chat": "a:b", "user": "a", "send_time": "0012"},
        {"chat": "a:b", "user": "b", "send_time": str(2**63 - 1)},
        {"chat": "a:b", "user": "a", "send_time": ""},
        {"chat": "a:b", "user": "a", "send_time": -1},
        {"chat": "a:b", "user": "a", "send_time": 2**63},
        {"chat": "a:b", "user": "a", "send_time": str(2**63)},
        {"chat": "a:b", "user": "a", "send_time": 1.5},
        {"chat": "a:b", "user": "a", "send_time": "1e3"},
        {"chat": "a:b", "user": "a", "send_time": True},
        {"chat": "a:b:c", "user": "a", "send_time": 1},
        {"chat": "a:b", "user": "a:", "send_time": 1},
        {"chat": "a:b", "user": 5, "send_time": 1},
        {"chat": 5, "user": "a", "send_time": 1},
    ],
)
def test_read_body_schema_never_stricter_than_the_server(fields: dict[str, Any]) -> None:
    """A JSON read body the server accepts passes the schema, and these refusals are caught."""
    try:
        read_params({k: v for k, v in fields.items() if v is not None})
        accepted = True
    except ApiError:
        accepted = False
    assert is_valid(pointer("components", "schemas", "ReadJsonBody"), fields) == accepted


def fetch_raw(base: str, path: str) -> tuple[int, dict[str, str], bytes]:
    url = urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname or "127.0.0.1", url.port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def test_docs_serve_swagger_ui_from_the_package(stack: Stack) -> None:
    """/docs is Swagger UI: the page, its scripts and styles all from this server, no CDN."""
    status, headers, page = fetch_raw(stack.base, "/docs")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in headers["content-security-policy"]
    assets = re.findall(rb'(?:src|href)="([^"]+)"', page)
    assert len(assets) == 4 and all(a.startswith(b"/docs/") for a in assets), assets
    kinds = {".js": "javascript", ".css": "text/css"}
    for asset in assets:
        status, headers, body = fetch_raw(stack.base, asset.decode())
        assert status == 200, asset
        assert kinds[asset[asset.rindex(b".") :].decode()] in headers["content-type"], asset
        assert len(body) > 100, asset
    bundle = fetch_raw(stack.base, "/docs/ui/swagger-ui-bundle.js")[2]
    assert b"SwaggerUIBundle" in bundle
    init = fetch_raw(stack.base, "/docs/init.js")[2]
    assert b'"/docs/openapi.json"' in init


@pytest.mark.parametrize(
    "path", ["/docs/ui/../openapi.json", "/docs/ui/%2e%2e/%2e%2e/__init__.py", "/docs/ui/nope.js"]
)
def test_docs_assets_stay_in_their_folder(stack: Stack, path: str) -> None:
    """Nothing outside Swagger UI's folder is served from /docs/ui/; misses are JSON 404s."""
    status, _, body = fetch_raw(stack.base, path)
    if status == 200:
        # Only a normalised URL that lands on the real document itself may answer.
        assert body == DOC_BYTES, path
    else:
        assert status in (400, 404), (path, status)
        assert orjson.loads(body)["code"] == status
