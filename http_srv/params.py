"""Request parameters: merged from query, form and JSON body, then validated.

A field may come from the query string, an urlencoded or multipart form, or a
JSON object body (GET included). When a field is given in several sources the
JSON body wins over the form, and the form over the query; inside one source
the first value wins. Validation errors are 400s that name the field.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import orjson
from sanic.headers import parse_content_header
from sanic.request.form import parse_multipart_form

from contract.chat import (
    ChatError,
    canonical_chat,
    check_client_msg_id,
    check_member,
    split_chat,
    utf8_longer_than,
)
from contract.wire import CLIENT_MSG_ID_MAX_CHARS, CURSOR_MAX, PULL_LIMIT_DEFAULT, PULL_LIMIT_MAX
from http_srv.errors import ApiError, bad_field

MAX_FIELDS = 100  # a query or form with more fields than this is refused
_TRUE = frozenset(("true", "1"))
_FALSE = frozenset(("false", "0"))


def _first_wins(pairs: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for key, value in pairs:
        fields.setdefault(key, value)
    return fields


def parse_urlencoded(data: str, where: str) -> dict[str, str]:
    """Fields of a query string or urlencoded body; invalid UTF-8 is a 400."""
    try:
        pairs = parse_qsl(
            data,
            keep_blank_values=True,
            encoding="utf-8",
            errors="strict",
            max_num_fields=MAX_FIELDS,
        )
    except UnicodeDecodeError:
        raise ApiError(400, f"{where}: not valid UTF-8 once percent-decoded") from None
    except ValueError:
        raise ApiError(400, f"{where}: more than {MAX_FIELDS} fields") from None
    return _first_wins(pairs)


def parse_json_object(body: bytes) -> dict[str, Any]:
    """A JSON object body; anything else is a 400. ``null`` values count as absent."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"body: not valid JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ApiError(400, "body: a JSON body must be an object")
    return {k: v for k, v in value.items() if v is not None}


def parse_multipart(body: bytes, boundary: str | None) -> dict[str, str]:
    if not boundary:
        raise ApiError(400, "body: multipart/form-data without a boundary")
    try:
        fields, _files = parse_multipart_form(body, boundary.encode("utf-8"))  # type: ignore[no-untyped-call]
    except (ValueError, LookupError, IndexError, UnicodeError):
        raise ApiError(400, "body: malformed multipart/form-data") from None
    return {key: values[0] for key, values in fields.items()}


def _looks_like_json(body: bytes) -> bool:
    return body.lstrip()[:1] in (b"{", b"[")


def parse_body(content_type: str | None, body: bytes) -> dict[str, Any]:
    """Fields of a request body, read as its Content-Type says.

    An urlencoded body, or one with no or an unknown Content-Type, whose first
    non-blank byte is '{' or '[' is read as JSON (what ``curl -d '{...}'`` sends).
    """
    if not body.strip():
        return {}
    media, options = parse_content_header(content_type or "")
    media = media.lower()
    if media == "application/json" or media.endswith("+json"):
        return parse_json_object(body)
    if media == "multipart/form-data":
        boundary = options.get("boundary")
        return parse_multipart(body, boundary if isinstance(boundary, str) else None)
    if _looks_like_json(body):
        return parse_json_object(body)
    if media in ("application/x-www-form-urlencoded", ""):
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError:
            raise ApiError(400, "body: not valid UTF-8") from None
        return parse_urlencoded(text, "body")
    raise ApiError(
        415,
        f"body: Content-Type {media!r} is not supported; send application/json, "
        "application/x-www-form-urlencoded or multipart/form-data",
    )


def merge_fields(query: Mapping[str, Any], body_fields: Mapping[str, Any]) -> dict[str, Any]:
    """One view of all fields: the body's (JSON or form) win over the query's."""
    return {**query, **body_fields}


# Field readers: values come as str from a query or form, or as any JSON type.


def read_str(fields: Mapping[str, Any], name: str) -> str | None:
    value = fields.get(name)
    if value is None or isinstance(value, str):
        return value
    raise bad_field(name, "must be a string")


def read_member(fields: Mapping[str, Any], name: str) -> str | None:
    value = read_str(fields, name)
    if value is not None:
        try:
            check_member(value)
        except ChatError as exc:
            raise bad_field(name, str(exc)) from None
    return value


def read_int(fields: Mapping[str, Any], name: str, hi: int, blank_ok: bool) -> int | None:
    """A non-negative integer: plain ASCII digits, or a JSON integer."""
    value = fields.get(name)
    if value is None:
        return None
    problem = f"must be an integer from 0 to {hi}"
    if isinstance(value, str):
        if value == "" and blank_ok:
            return None
        if not (value.isascii() and value.isdigit()) or len(value) > 20:
            raise bad_field(name, problem)
        value = int(value)
    elif type(value) is not int:
        raise bad_field(name, problem)
    if not 0 <= value <= hi:
        raise bad_field(name, problem)
    return value


def read_bool(fields: Mapping[str, Any], name: str) -> bool | None:
    value = fields.get(name)
    if value is None or isinstance(value, bool):
        return value
    if type(value) is int and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        lowered = value.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
    raise bad_field(name, "must be true, false, 1 or 0")


def read_chat(fields: Mapping[str, Any], name: str = "chat") -> tuple[str, str] | None:
    value = read_str(fields, name)
    if value is None:
        return None
    try:
        return split_chat(value)
    except ChatError as exc:
        raise bad_field(name, str(exc)) from None


@dataclass(frozen=True, slots=True)
class SendParams:
    chat: str  # canonical
    sender: str
    text: str
    client_msg_id: str | None


@dataclass(frozen=True, slots=True)
class PullParams:
    chat: str  # canonical
    cursor: int
    limit: int
    reverse: bool


def read_client_msg_id(fields: Mapping[str, Any], header: str | None) -> str | None:
    """The idempotency key: the ``Idempotency-Key`` header or ``client_msg_id``."""
    field = read_str(fields, "client_msg_id")
    if header is not None and field is not None and header != field:
        raise bad_field("client_msg_id", "differs from the Idempotency-Key header")
    value, name = (header, "Idempotency-Key") if header is not None else (field, "client_msg_id")
    if value is None:
        return None
    try:
        return check_client_msg_id(value, CLIENT_MSG_ID_MAX_CHARS)
    except ChatError as exc:
        raise bad_field(name, str(exc)) from None


def send_params(
    fields: Mapping[str, Any], text_max_bytes: int, idempotency_header: str | None = None
) -> SendParams:
    """Validate a send: chat (or receiver), sender and text."""
    members = read_chat(fields)
    sender = read_member(fields, "sender")
    receiver = read_member(fields, "receiver")
    if sender is None:
        raise bad_field("sender", "is required")
    if members is None:
        if receiver is None:
            raise bad_field("chat", "is required (or give receiver)")
        members = (sender, receiver)
    elif sender not in members:
        raise bad_field("sender", "must be one of the chat's two members")
    elif receiver is not None:
        other = members[1] if members[0] == sender else members[0]
        if receiver != other:
            raise bad_field("receiver", "must be the chat's other member")
    text = read_str(fields, "text")
    if text is None:
        raise bad_field("text", "is required (an empty string is allowed)")
    if utf8_longer_than(text, text_max_bytes):
        raise bad_field("text", f"must be at most {text_max_bytes} bytes of UTF-8")
    return SendParams(
        chat=canonical_chat(*members),
        sender=sender,
        text=text,
        client_msg_id=read_client_msg_id(fields, idempotency_header),
    )


def pull_params(fields: Mapping[str, Any]) -> PullParams:
    """Validate a pull: chat, cursor, limit and reverse, with their defaults."""
    members = read_chat(fields)
    if members is None:
        raise bad_field("chat", "is required")
    cursor = read_int(fields, "cursor", CURSOR_MAX, blank_ok=True) or 0
    limit = read_int(fields, "limit", PULL_LIMIT_MAX, blank_ok=False) or PULL_LIMIT_DEFAULT
    reverse = read_bool(fields, "reverse") or False
    return PullParams(canonical_chat(*members), cursor, limit, reverse)
