"""Request parameters: merged from query, form and JSON body, then validated.

A field may come from the query string, an urlencoded or multipart form, or a
JSON object body (GET included). When a field is given in several sources the
JSON body wins over the form, and the form over the query; inside one source
the first value wins. The fields are then checked by the contract's rules
(contract/requests.py), the same the RPC service applies; a broken rule is a
400 that names the field.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar
from urllib.parse import parse_qsl

import orjson
from sanic.headers import parse_content_header
from sanic.request.form import parse_multipart_form

from contract.requests import (
    ChatsRequest,
    FieldError,
    PullRequest,
    ReadRequest,
    SendRequest,
    chats_request,
    pull_request,
    read_int,
    read_request,
    send_request,
)
from contract.wire import CURSOR_MAX
from http_srv.errors import ApiError, bad_field

T = TypeVar("T")

MAX_FIELDS = 100  # a query or form with more fields than this is refused
_WAIT_DIGITS = 18  # digits that always fit an int64; a longer wait waits the maximum


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
    empty_form = body.strip() == f"--{boundary}--".encode()
    if not fields and not empty_form and b"content-disposition" not in body.lower():
        # Bytes without a single part header: not a form at all.
        raise ApiError(400, "body: malformed multipart/form-data (no part)")
    return {key: values[0] for key, values in fields.items()}


def _looks_like_json(body: bytes) -> bool:
    return body.lstrip()[:1] in (b"{", b"[")


def parse_body(content_type: str | None, body: bytes) -> dict[str, Any]:
    """Fields of a request body, read as its Content-Type says.

    An urlencoded body, or one with no or an unknown Content-Type, whose first
    non-blank byte is '{' or '[' is read as JSON (what ``curl -d '{...}'`` sends).
    """
    if not body:
        return {}
    media, options = parse_content_header(content_type or "")
    media = media.lower()
    if media == "application/json" or media.endswith("+json"):
        return parse_json_object(body)  # blanks alone are not JSON: a 400
    if not body.strip():
        return {}  # a blank form holds no field
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


def checked(rule: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """A request checked by one of the contract's rules; a broken rule is a 400 naming the field."""
    try:
        return rule(*args, **kwargs)
    except FieldError as exc:
        raise bad_field(exc.field, exc.problem) from None


def send_params(
    fields: Mapping[str, Any], text_max_bytes: int, idempotency_header: str | None = None
) -> SendRequest:
    """A send checked by the contract's rules; a broken one is a 400 naming the field."""
    return checked(send_request, fields, text_max_bytes, idempotency_header)


def pull_params(fields: Mapping[str, Any]) -> PullRequest:
    """A pull checked by the contract's rules (values may be text); else a 400."""
    return checked(pull_request, fields, from_text=True)


def chats_params(fields: Mapping[str, Any]) -> ChatsRequest:
    """A conversation list's page checked by the contract's rules; else a 400."""
    return checked(chats_request, fields, from_text=True)


def read_params(fields: Mapping[str, Any]) -> ReadRequest:
    """A read receipt checked by the contract's rules; else a 400."""
    return checked(read_request, fields, from_text=True)


def since_param(fields: Mapping[str, Any]) -> int:
    """A chats request's ``since``: an earlier ``latest_activity`` (blank or absent: 0)."""
    since = checked(read_int, fields, "since", CURSOR_MAX, from_text=True, blank_ok=True)
    return since or 0


def wait_param(fields: Mapping[str, Any], wait_max: int) -> int:
    """A pull's ``wait``: whole seconds, by the contract's integer rule, at most `wait_max`.

    Blank or absent is 0 (as for ``cursor``). Digits beyond any integer of the
    contract still make a number, and wait the maximum. Anything else is a 400.
    """
    value = fields.get("wait")
    if isinstance(value, str) and len(value) > _WAIT_DIGITS and value.isascii() and value.isdigit():
        return wait_max
    try:
        wait = read_int(fields, "wait", CURSOR_MAX, from_text=True, blank_ok=True) or 0
    except FieldError:
        raise bad_field(
            "wait", f"must be a whole number of seconds, 0 or more (at most {wait_max} are waited)"
        ) from None
    return min(wait, wait_max)
