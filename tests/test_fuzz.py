"""Fuzz the public API with schemathesis against the served OpenAPI document.

Every operation of ``http_srv/openapi.json`` (send, pull, chats and read, and
cheaply ping, the chat page, the document and the metrics) gets generated
requests, valid and invalid, sent to a real stack (a ``stack`` of its own, on
127.0.0.1). Every answer
must pass schemathesis' own checks: no 5xx, a documented status, the documented
content type, headers and body schema, 405 with ``Allow`` for other methods,
schema-violating requests rejected and schema-valid ones accepted. The last two
are refined only where the API contract (api.md) is, on purpose, more lenient or more
demanding than the document's schemas can say: see
``documented_negative_rejection`` and ``documented_positive_acceptance``. One
rule the schemas cannot hold is checked the other way round: a conversation
list cursor is opaque, so a generated one, however well formed, is not one the
server gave, and a request valid but for it must get a 400 naming ``cursor``
(``documented_cursor_refusal``). Every stored message is then pulled back
(``assert_stored``), a cheap stateful check of the send -> pull round trip; a
conversation list page and a read receipt are checked against the chats' own
pages (``assert_listed``, ``assert_read_state``).

The run is bounded and deterministic: ``MAX_EXAMPLES`` fuzzed cases per
operation (plus schemathesis' example and coverage cases), a fixed seed with
Hypothesis derandomized, no example database, no deadline. ``FUZZ_SEED`` and
``FUZZ_MAX_EXAMPLES`` in the environment explore further by hand.

``test_document_and_server_agree_at_the_edges`` and
``test_document_and_server_agree_at_the_conversation_edges`` pin, one request
each, the boundaries where the fuzzer found the document and the server
disagreeing, or where they are most likely to.

Why not ``schemathesis.pytest.from_fixture``: with pytest 9.2 its lazy loader
fails before running any case (schemathesis 4.32.5 sets ``request.node._nodeid``,
which pytest 9.2's nodes no longer have). So the schema is loaded eagerly from
the packaged file, ``served_document`` checks that the running server serves
exactly that file before any case runs, and each case is sent to the stack.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cache
from importlib.resources import files
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from openapi_schema_validator import OAS30Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4
from schemathesis import Case, CheckContext, Response
from schemathesis.core.parameters import ParameterLocation
from schemathesis.specs.openapi.checks import negative_data_rejection, positive_data_acceptance

from contract import chats_cursor
from http_srv.errors import ApiError
from http_srv.params import merge_fields, parse_body, parse_urlencoded
from launcher.stack import Stack
from tests.stacks import StackFactory

# Fuzzed cases per operation. Schemathesis adds its example and coverage cases
# (some 180 to 250 for each of send, pull, chats and read), so 1500 sends about
# 6,900 requests to the four API endpoints: some 5 minutes on a busy 2-core machine.
MAX_EXAMPLES = int(os.environ.get("FUZZ_MAX_EXAMPLES", "1500"))
SEED = int(os.environ.get("FUZZ_SEED", "20231128"))
TEXT_MAX_BYTES = 65536  # the front end's default TEXT_MAX_BYTES, which `stack` keeps

DOC_BYTES = files("http_srv").joinpath("openapi.json").read_bytes()
DOC_URI = "https://pullchat.invalid/openapi.json"
CONFIG = schemathesis.Config.from_dict(
    {
        "seed": SEED,
        "request-timeout": 10,
        "suppress-health-check": ["too_slow"],
        "generation": {
            "deterministic": True,
            "max-examples": MAX_EXAMPLES,
            "database": "none",
        },
    }
)
schema = schemathesis.openapi.from_dict(json.loads(DOC_BYTES), config=CONFIG)
DOC: dict[str, Any] = json.loads(DOC_BYTES)  # a copy schemathesis does not touch


# The document's schemas, for the checks below.

_REGISTRY: Registry[Any] = Registry().with_resource(
    DOC_URI, Resource.from_contents(DOC, default_specification=DRAFT4)
)


@cache
def validator(pointer: str) -> Any:
    """A validator for the schema at `pointer` ("#/components/..."), refs resolved."""
    return OAS30Validator({"$ref": f"{DOC_URI}{pointer}"}, registry=_REGISTRY)


def query_parameter(path: str, method: str, name: str) -> tuple[str, dict[str, Any]] | None:
    """(pointer to its schema, the parameter) of one documented query parameter."""
    for index, parameter in enumerate(DOC["paths"][path][method.lower()].get("parameters", [])):
        here = f"#/paths/{path.replace('/', '~1')}/{method.lower()}/parameters/{index}"
        pointer = parameter.get("$ref", here)
        if "$ref" in parameter:
            parameter = DOC
            for part in pointer.removeprefix("#/").split("/"):
                parameter = parameter[part]
        if parameter["in"] == "query" and parameter["name"] == name:
            return f"{pointer}/schema", parameter
    return None


def query_value_is_valid(path: str, method: str, name: str, value: str) -> bool:
    """Whether a query value, read as api.md reads it, follows its parameter's schema."""
    found = query_parameter(path, method, name)
    if found is None:
        return False
    pointer, parameter = found
    if value == "" and parameter.get("allowEmptyValue"):
        return True  # `cursor=` counts as absent
    check = validator(pointer)
    if check.is_valid(value):
        return True
    # Integers in a query are plain decimal digits.
    return value.isascii() and value.isdigit() and bool(check.is_valid(int(value)))


# The request as the server reads it: the server's own parsing (http_srv.params).


def sent_fields(request: requests.PreparedRequest) -> tuple[dict[str, Any], dict[str, Any]]:
    """(query fields, body fields) of a request as sent; ValueError if unreadable."""
    query_string = urlsplit(request.url or "").query
    raw = request.body or b""
    try:
        query = parse_urlencoded(query_string, "query") if query_string else {}
        body = parse_body(
            request.headers.get("Content-Type"), raw.encode() if isinstance(raw, str) else raw
        )
    except ApiError as exc:
        raise ValueError(exc.msg) from None
    return query, body


def merged_fields(request: requests.PreparedRequest) -> dict[str, Any]:
    """All fields of a request: the body's win over the query's."""
    return merge_fields(*sent_fields(request))


# Refined checks: api.md where the schemas cannot say it.


def _blank(value: str) -> bool:
    return not value or value.isspace()


def _has_lone_surrogate(value: str) -> bool:
    return any("\ud800" <= char <= "\udfff" for char in value)


FOREIGN_CURSOR = "a cursor the server did not give"


def _server_gave(cursor: str, user: Any) -> bool:
    """Whether `cursor` can be a next_cursor of `user`'s list (what the server accepts back)."""
    try:
        chats_cursor.decode(cursor, user if isinstance(user, str) else "")
    except chats_cursor.CursorError:
        return False
    return True


def unencoded_rule_broken(path: str, request: requests.PreparedRequest) -> str | None:
    """Which documented rule outside the schemas the request breaks, if any.

    The document says so itself: its schemas do not encode "not blank" and "no
    lone surrogate", a field required after merging the sources (each source
    makes every field optional), the rules between fields (sender in the chat,
    receiver agreeing with it, header and client_msg_id agreeing, a read
    receipt's user in the chat), the text's limit in UTF-8 bytes, and that a
    conversation list cursor is one the server gave (FOREIGN_CURSOR, checked
    last: it is the one rule whose breach has a fixed answer). Any other rule is
    the schemas' to state, so a schema-valid request breaking none of these
    must be accepted.
    """
    if path not in ("/api/send", "/api/pull", "/api/chats", "/api/read"):
        return None
    try:
        fields = merged_fields(request)
    except ValueError:
        return None
    header = request.headers.get("Idempotency-Key")
    if header is not None:
        header = header.strip(" \t")  # HTTP drops a field value's surrounding whitespace
    strings = [v for v in fields.values() if isinstance(v, str)]
    if any(_has_lone_surrogate(s) for s in [*strings, header or ""]):
        return "a lone surrogate"
    chat = fields.get("chat")
    members = chat.split(":") if isinstance(chat, str) else []
    if len(members) == 2 and any(_blank(m) for m in members):
        return "a blank chat member"
    if path == "/api/pull":
        return "chat missing from every source" if chat is None else None
    user = fields.get("user")
    if isinstance(user, str) and _blank(user):
        return "a blank user"
    if path == "/api/chats":
        if user is None:
            return "user missing from every source"
        cursor = fields.get("cursor")
        if isinstance(cursor, str) and cursor and not _server_gave(cursor, user):
            return FOREIGN_CURSOR
        return None
    if path == "/api/read":
        if chat is None or user is None or fields.get("send_time") is None:
            return "chat, user or send_time missing from every source"
        if len(members) == 2 and user not in members:
            return "user not in the chat"
        return None
    sender, receiver = fields.get("sender"), fields.get("receiver")
    text, key = fields.get("text"), fields.get("client_msg_id")
    if sender is None or text is None or (chat is None and receiver is None):
        return "sender, text, or both chat and receiver missing from every source"
    if any(isinstance(v, str) and _blank(v) for v in (sender, receiver)):
        return "a blank sender or receiver"
    if len(members) == 2 and sender not in members:
        return "sender not in the chat"
    if len(members) == 2 and receiver is not None:
        other = members[1] if members[0] == sender else members[0]
        if receiver != other:
            return "receiver not the chat's other member"
    if header is not None and key is not None and header != key:
        return "Idempotency-Key differs from client_msg_id"
    if any(isinstance(k, str) and _blank(k.replace(":", "-")) for k in (header, key)):
        return "a blank idempotency key"
    if isinstance(text, str) and len(text.encode("utf-8", "surrogatepass")) > TEXT_MAX_BYTES:
        return "text over TEXT_MAX_BYTES"
    return None


def documented_positive_acceptance(
    ctx: CheckContext, response: Response, case: Case
) -> bool | None:
    """schemathesis' positive_data_acceptance, but not for the rules the document keeps in words."""
    if unencoded_rule_broken(case.path, response.request) is not None:
        return None
    return positive_data_acceptance(ctx, response, case)


def documented_cursor_refusal(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """A schema-valid chats request whose one fault is a generated cursor: a 400 naming cursor.

    api.md: anything but a next_cursor the server gave for this user is a 400
    naming ``cursor``. The schema can only say what a cursor looks like, so
    the fuzzer's well-formed cursors are valid to it; this holds the server to
    the rule in words instead (``documented_positive_acceptance`` skips them).
    """
    meta = case.meta
    if case.path != "/api/chats" or meta is None or not meta.generation.mode.is_positive:
        return None
    if unencoded_rule_broken(case.path, response.request) != FOREIGN_CURSOR:
        return None
    answer = response.json() if response.status_code == 400 else None
    msg = answer.get("msg", "") if isinstance(answer, dict) else ""
    assert response.status_code == 400 and msg.startswith("cursor: "), (
        f"a cursor the server did not give must be a 400 naming cursor, got "
        f"{response.status_code} {response.text[:300]}"
    )
    return True


def _negated_query_parameters(case: Case) -> set[str] | None:
    """The query parameters a negative case made invalid; None if it made anything else invalid."""
    meta = case.meta
    if meta is None:
        return None
    negative = {where for where, info in meta.components.items() if info.mode.is_negative}
    if negative != {ParameterLocation.QUERY}:
        return None
    data = meta.phase.data
    names = {m.parameter for m in data.mutations if m.parameter}
    if data.parameter:
        names.add(data.parameter)
    return names or None


def documented_negative_rejection(ctx: CheckContext, response: Response, case: Case) -> bool | None:
    """schemathesis' negative_data_rejection, except where api.md makes the invalid part moot.

    Only the first of a query field's repeated values counts, and a field in the
    body wins over the same field in the query. So a case whose only invalid
    parts are later repeats (an array sent as ``?cursor=9&cursor=x``) or query
    values the body overrides is a valid request, which the server accepts.
    """
    names = _negated_query_parameters(case)
    if names is not None and response.status_code < 300:
        try:
            query, body = sent_fields(response.request)
        except ValueError:
            query, body = {}, {}
        if all(
            name in body or query_value_is_valid(case.path, case.method, name, query.get(name, ""))
            for name in names
        ):
            return None
    return negative_data_rejection(ctx, response, case)


# Fixtures.


@pytest.fixture(scope="module")
def stack(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The service for the fuzzer, its waits cut to nothing (PULL_WAIT_MAX=0).

    A generated ``wait`` would otherwise hold a case with an empty page up to
    30 s; what a wait does is tested in test_longpoll.py.
    """
    stacks = StackFactory(tmp_path_factory.mktemp("fuzz-stack"))
    yield stacks(redis_url, REQUEST_TIMEOUT="2", PULL_WAIT_MAX="0")
    stacks.stop_all()


@pytest.fixture(scope="module")
def served_document(stack: Stack) -> bytes:
    """The document the server serves: byte for byte the one the cases come from."""
    served = requests.get(f"{stack.base}/docs/openapi.json", timeout=10)
    assert served.status_code == 200
    assert served.content == DOC_BYTES
    return served.content


@pytest.fixture(scope="session")
def http_session() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every request made through `requests` here, the checks' own included, goes to 127.0.0.1."""
    send = requests.adapters.HTTPAdapter.send

    def guarded(self: Any, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> Any:
        host = urlsplit(request.url or "").hostname
        assert host == "127.0.0.1", f"a generated request left loopback: {request.url}"
        return send(self, request, *args, **kwargs)

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", guarded)


@dataclass
class Tally:
    """The answers to one operation's cases, kept up to date in the recorded properties."""

    properties: list[tuple[str, object]]
    statuses: Counter[int] = field(default_factory=Counter)
    held_to_acceptance: int = 0  # schema-valid cases that broke no rule kept in words
    held_to_cursor_refusal: int = 0  # schema-valid but for a generated cursor: 400 naming it
    listed: int = 0  # 200 chats pages with at least one conversation

    def add(self, case: Case, response: Response) -> None:
        self.statuses[response.status_code] += 1
        meta = case.meta
        if meta is not None and meta.generation.mode.is_positive:
            broken = unencoded_rule_broken(case.path, response.request)
            self.held_to_acceptance += broken is None
            self.held_to_cursor_refusal += broken == FOREIGN_CURSOR
        if case.path == "/api/chats" and response.status_code == 200:
            self.listed += bool(response.json()["chats"])
        figures: dict[str, object] = {
            "operation": case.operation.label,
            "fuzz cases run": sum(self.statuses.values()),
            "5xx found": sum(n for s, n in self.statuses.items() if s >= 500),
            "answers by status": ", ".join(f"{s}: {n}" for s, n in sorted(self.statuses.items())),
            "schema-valid cases that must get a 2xx": self.held_to_acceptance,
        }
        if case.path == "/api/chats":
            figures["schema-valid cases with a generated cursor (must be a 400)"] = (
                self.held_to_cursor_refusal
            )
            figures["pages with a conversation, checked against its chats"] = self.listed
        self.properties[:] = [(k, v) for k, v in self.properties if k not in figures]
        self.properties.extend(figures.items())


@pytest.fixture
def tally(request: pytest.FixtureRequest) -> Tally:
    return Tally(request.node.user_properties)


# The send -> pull round trip.


def assert_stored(
    base: str, session: requests.Session, sent: Response, fields: dict[str, Any]
) -> None:
    """A 200 send is pulled back at its send_time: same chat and, unless it was a
    duplicate (whose other fields are not compared), same sender and text."""
    answer = sent.json()
    query = urlencode({"chat": answer["chat"], "cursor": answer["send_time"], "limit": 1})
    pulled = session.get(f"{base}/api/pull?{query}", timeout=10)
    assert pulled.status_code == 200, pulled.text
    messages = pulled.json()["messages"]
    assert messages, f"sent {answer}, but the pull at its send_time is empty"
    message = messages[0]
    assert (message["chat"], message["send_time"]) == (answer["chat"], answer["send_time"])
    if not answer["duplicate"]:
        assert (message["sender"], message["text"]) == (answer["sender"], fields["text"])


def newest_send_times(base: str, session: requests.Session, chat: str, limit: int) -> list[int]:
    """The send_times of a chat's newest `limit` messages, newest first."""
    query = urlencode({"chat": chat, "reverse": "true", "limit": limit})
    pulled = session.get(f"{base}/api/pull?{query}", timeout=10)
    assert pulled.status_code == 200, pulled.text
    return [m["send_time"] for m in pulled.json()["messages"]]


def assert_listed(
    base: str, session: requests.Session, answer: Response, fields: dict[str, Any]
) -> None:
    """A 200 chats page: the user's chats, newest first, each entry true to its chat."""
    page = answer.json()
    user = fields["user"]
    times = [entry["last_message"]["send_time"] for entry in page["chats"]]
    assert times == sorted(times, reverse=True), page
    assert page["latest_activity"] >= max(times, default=0), page
    assert page["has_more"] == bool(page["next_cursor"]), page
    for index, entry in enumerate(page["chats"]):
        members = entry["chat"].split(":")
        assert user in members and entry["last_message"]["chat"] == entry["chat"], entry
        assert entry["peer"] == (members[1] if members[0] == user else members[0]), entry
        assert entry["read_cursor"] <= entry["last_message"]["send_time"], entry
        if index < 3:  # a pull each: the first few are enough
            newest = newest_send_times(base, session, entry["chat"], 1)
            assert newest == [entry["last_message"]["send_time"]], (entry, newest)


def assert_read_state(base: str, session: requests.Session, answer: Response) -> None:
    """A 200 read receipt: its cursor at or below the chat's newest message, unread counted."""
    state = answer.json()
    newest = newest_send_times(base, session, state["chat"], 1000)
    assert state["read_cursor"] <= (newest[0] if newest else 0), (state, newest[:1])
    if len(newest) < 1000:
        assert state["unread"] == sum(t > state["read_cursor"] for t in newest), state


# The fuzz test: one pytest item per operation of the document.


@schema.parametrize()
# `tally` outlives each case on purpose: it adds up the operation's whole run.
@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@pytest.mark.timeout(300)
def test_answers_follow_the_document(
    case: Case,
    stack: Stack,
    served_document: bytes,
    http_session: requests.Session,
    tally: Tally,
) -> None:
    response = case.call(base_url=stack.base, session=http_session)
    tally.add(case, response)
    assert urlsplit(response.request.url).hostname == "127.0.0.1"
    case.validate_response(
        response,
        excluded_checks=[positive_data_acceptance, negative_data_rejection],
        additional_checks=[
            documented_positive_acceptance,
            documented_negative_rejection,
            documented_cursor_refusal,
        ],
    )
    if response.status_code == 200:
        if case.path == "/api/send":
            assert_stored(stack.base, http_session, response, merged_fields(response.request))
        elif case.path == "/api/chats":
            assert_listed(stack.base, http_session, response, merged_fields(response.request))
        elif case.path == "/api/read":
            assert_read_state(stack.base, http_session, response)


# The edges where the fuzzer found the document and the server disagreeing.

LONG = "m" * 129  # a member one character over MEMBER_MAX_CHARS
CURSOR_MAX = str(2**63 - 1)
CURSOR_OVER = str(2**63)
FORM = "application/x-www-form-urlencoded"


@pytest.mark.parametrize(
    ("query", "content_type", "body"),
    [
        ({"chat": "a:" + "m" * 128}, None, None),
        ({"chat": "a:" + LONG}, None, None),
        ({}, FORM, {"chat": "a:" + LONG}),
        ({}, "application/json", {"chat": "a:" + LONG}),
        ({}, FORM, {"chat": "a:b", "limit": "1000"}),
        ({}, FORM, {"chat": "a:b", "limit": "1001"}),
        ({}, "application/json", {"chat": "a:b", "limit": "1001"}),
        ({}, "application/json", {"chat": "a:b", "limit": 1001}),
        ({}, FORM, {"chat": "a:b", "cursor": CURSOR_MAX}),
        ({}, FORM, {"chat": "a:b", "cursor": CURSOR_OVER}),
        ({}, "application/json", {"chat": "a:b", "cursor": CURSOR_OVER}),
        ({}, "application/json", {"chat": "a:b", "cursor": int(CURSOR_OVER)}),
    ],
    ids=[
        "query-chat-member-128",
        "query-chat-member-129",
        "form-chat-member-129",
        "json-chat-member-129",
        "form-limit-1000",
        "form-limit-1001",
        "json-string-limit-1001",
        "json-integer-limit-1001",
        "form-cursor-2^63-1",
        "form-cursor-2^63",
        "json-string-cursor-2^63",
        "json-integer-cursor-2^63",
    ],
)
def test_document_and_server_agree_at_the_edges(
    stack: Stack,
    served_document: bytes,
    query: dict[str, str],
    content_type: str | None,
    body: dict[str, Any] | None,
) -> None:
    """A pull the document calls valid gets a 200; one it calls invalid gets a 400."""
    schemas = {FORM: "PullForm", "application/json": "PullJsonBody"}
    valid = all(query_value_is_valid("/api/pull", "get", k, v) for k, v in query.items())
    if content_type is not None:
        valid = valid and bool(
            validator(f"#/components/schemas/{schemas[content_type]}").is_valid(body)
        )
    data = None
    if body is not None:
        data = json.dumps(body) if content_type == "application/json" else urlencode(body)
    headers = {"Content-Type": content_type} if content_type else {}
    answer = requests.get(
        f"{stack.base}/api/pull", params=query, data=data, headers=headers, timeout=10
    )
    assert answer.status_code == (200 if valid else 400), (
        f"the document calls this pull {'valid' if valid else 'invalid'}, "
        f"the server answers {answer.status_code} {answer.text}"
    )


JSON_BODY = "application/json"
CONVERSATION_SCHEMAS = {
    ("/api/chats", FORM): "ChatsForm",
    ("/api/chats", JSON_BODY): "ChatsJsonBody",
    ("/api/read", FORM): "ReadForm",
    ("/api/read", JSON_BODY): "ReadJsonBody",
}
CONVERSATION_METHODS = {"/api/chats": "GET", "/api/read": "POST"}


@pytest.mark.parametrize(
    ("path", "query", "content_type", "body"),
    [
        ("/api/chats", {"user": "a", "limit": "100"}, None, None),
        ("/api/chats", {"user": "a", "limit": "101"}, None, None),
        ("/api/chats", {"user": "a", "limit": "0"}, None, None),
        ("/api/chats", {"user": "a"}, FORM, {"limit": "0"}),
        ("/api/chats", {}, JSON_BODY, {"user": "a", "limit": 0}),
        ("/api/chats", {}, JSON_BODY, {"user": "a", "limit": "100"}),
        ("/api/chats", {"user": "a", "cursor": ""}, None, None),
        ("/api/chats", {"user": "a", "cursor": "abc"}, None, None),
        ("/api/chats", {}, FORM, {"user": "a", "cursor": "a+b/"}),
        ("/api/chats", {}, JSON_BODY, {"user": "a", "cursor": "A" * 1395}),
        ("/api/chats", {"user": "a", "since": CURSOR_MAX}, None, None),
        ("/api/chats", {"user": "a", "since": CURSOR_OVER}, None, None),
        ("/api/chats", {}, JSON_BODY, {"user": "a", "since": int(CURSOR_OVER)}),
        ("/api/chats", {"user": "a", "since": "", "wait": ""}, None, None),
        ("/api/chats", {"user": LONG}, None, None),
        ("/api/read", {"chat": "a:b", "user": "a", "send_time": CURSOR_MAX}, None, None),
        ("/api/read", {"chat": "a:b", "user": "a", "send_time": CURSOR_OVER}, None, None),
        ("/api/read", {"chat": "a:b", "user": "a", "send_time": ""}, None, None),
        ("/api/read", {}, FORM, {"chat": "a:b", "user": "b", "send_time": ""}),
        ("/api/read", {}, FORM, {"chat": "b:a", "user": "b", "send_time": "0"}),
        ("/api/read", {}, JSON_BODY, {"chat": "a:b", "user": "a", "send_time": int(CURSOR_OVER)}),
        ("/api/read", {}, JSON_BODY, {"chat": "a:b", "user": "a", "send_time": CURSOR_MAX}),
    ],
    ids=[
        "chats-query-limit-100",
        "chats-query-limit-101",
        "chats-query-limit-0",
        "chats-form-limit-0",
        "chats-json-limit-0",
        "chats-json-string-limit-100",
        "chats-query-empty-cursor",
        "chats-query-generated-cursor",
        "chats-form-cursor-outside-base64url",
        "chats-json-cursor-1395",
        "chats-query-since-2^63-1",
        "chats-query-since-2^63",
        "chats-json-since-2^63",
        "chats-query-empty-since-and-wait",
        "chats-query-user-129",
        "read-query-send_time-2^63-1",
        "read-query-send_time-2^63",
        "read-query-empty-send_time",
        "read-form-empty-send_time",
        "read-form-send_time-0",
        "read-json-send_time-2^63",
        "read-json-string-send_time-2^63-1",
    ],
)
def test_document_and_server_agree_at_the_conversation_edges(
    stack: Stack,
    served_document: bytes,
    path: str,
    query: dict[str, str],
    content_type: str | None,
    body: dict[str, Any] | None,
) -> None:
    """Chats and read: what the document calls valid gets a 200, invalid a 400.

    But for a cursor the server did not give: valid to the schema, it is a 400
    naming ``cursor`` (api.md).
    """
    method = CONVERSATION_METHODS[path]
    valid = all(query_value_is_valid(path, method, k, v) for k, v in query.items())
    if content_type is not None:
        schema_name = CONVERSATION_SCHEMAS[(path, content_type)]
        valid = valid and bool(validator(f"#/components/schemas/{schema_name}").is_valid(body))
    fields = {**query, **(body or {})}
    cursor = fields.get("cursor")
    foreign = isinstance(cursor, str) and bool(cursor) and not _server_gave(cursor, fields["user"])
    data = None
    if body is not None:
        data = json.dumps(body) if content_type == JSON_BODY else urlencode(body)
    headers = {"Content-Type": content_type} if content_type else {}
    answer = requests.request(
        method, f"{stack.base}{path}", params=query, data=data, headers=headers, timeout=10
    )
    expected = 200 if valid and not foreign else 400
    assert answer.status_code == expected, (
        f"the document calls this {method} {path} {'valid' if valid else 'invalid'}"
        f"{' but for its cursor' if foreign else ''}, the server answers "
        f"{answer.status_code} {answer.text}"
    )
    if foreign and valid:
        assert answer.json()["msg"].startswith("cursor: "), answer.text
