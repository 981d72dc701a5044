"""The checked forms of a send and a pull: one set of rules, applied by both tiers.

The front end checks a request before it calls the RPC service, and the RPC
service checks every call again (it is a service of its own): both do it with
`send_request` and `pull_request`, so a rule and its words exist once. A rule
broken raises FieldError, which names the field; each tier turns it into its
own reply (a 400 from the front end, code INVALID_ARGUMENT from the RPC).

Fields come as a mapping. Absent and ``None`` are the same. The front end's
fields may come from a query string or a form, where every value is text:
with ``from_text`` an integer may be given as ASCII digits and a boolean as
``true``/``false``/``1``/``0``. The RPC service reads JSON only (no
``from_text``): an integer is a JSON integer, a boolean a JSON boolean or 0/1.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from contract import chats_cursor
from contract.chat import (
    ChatError,
    canonical_chat,
    check_client_msg_id,
    check_member,
    split_chat,
    utf8_longer_than,
)
from contract.chats_cursor import ChatsCursor
from contract.wire import (
    CHATS_LIMIT_DEFAULT,
    CHATS_LIMIT_MAX,
    CLIENT_MSG_ID_MAX_CHARS,
    CURSOR_MAX,
    PULL_LIMIT_DEFAULT,
    PULL_LIMIT_MAX,
)

Fields = Mapping[str, Any]

_TRUE = frozenset(("true", "1"))
_FALSE = frozenset(("false", "0"))
_DIGITS_MAX = 20  # more digits than any integer of the contract can have


class FieldError(ValueError):
    """A field that breaks the contract; the words start with the field's name."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


@dataclass(frozen=True, slots=True)
class SendRequest:
    chat: str  # canonical
    sender: str
    text: str
    client_msg_id: str | None


@dataclass(frozen=True, slots=True)
class PullRequest:
    chat: str  # canonical
    cursor: int
    limit: int
    reverse: bool


@dataclass(frozen=True, slots=True)
class ChatsRequest:
    user: str
    limit: int
    after: ChatsCursor | None  # the page starts after this entry; None: from the newest


@dataclass(frozen=True, slots=True)
class ReadRequest:
    chat: str  # canonical
    user: str
    send_time: int


def read_str(fields: Fields, name: str) -> str | None:
    value = fields.get(name)
    if value is None or isinstance(value, str):
        return value
    raise FieldError(name, "must be a string")


def read_member(fields: Fields, name: str) -> str | None:
    value = read_str(fields, name)
    if value is not None:
        try:
            check_member(value)
        except ChatError as exc:
            raise FieldError(name, str(exc)) from None
    return value


def read_chat(fields: Fields, name: str = "chat") -> tuple[str, str] | None:
    """A chat's two members, in the order given."""
    value = read_str(fields, name)
    if value is None:
        return None
    try:
        return split_chat(value)
    except ChatError as exc:
        raise FieldError(name, str(exc)) from None


def read_int(
    fields: Fields, name: str, hi: int, *, from_text: bool, blank_ok: bool = False, lo: int = 0
) -> int | None:
    """An integer from `lo` to `hi`; with `from_text` also ASCII digits ("" if `blank_ok`)."""
    value = fields.get(name)
    if value is None:
        return None
    problem = f"must be an integer from {lo} to {hi}"
    if from_text and isinstance(value, str):
        if value == "" and blank_ok:
            return None
        if not (value.isascii() and value.isdigit()) or len(value) > _DIGITS_MAX:
            raise FieldError(name, problem)
        value = int(value)
    elif type(value) is not int:
        raise FieldError(name, problem)
    if not lo <= value <= hi:
        raise FieldError(name, problem)
    return value


def read_bool(fields: Fields, name: str, *, from_text: bool) -> bool | None:
    value = fields.get(name)
    if value is None or isinstance(value, bool):
        return value
    if type(value) is int and value in (0, 1):
        return bool(value)
    if from_text and isinstance(value, str):
        lowered = value.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
    raise FieldError(name, "must be true, false, 1 or 0")


def read_client_msg_id(fields: Fields, header: str | None = None) -> str | None:
    """The idempotency key: ``client_msg_id``, or the front end's ``Idempotency-Key`` header."""
    field = read_str(fields, "client_msg_id")
    if header is not None and field is not None and header != field:
        raise FieldError("client_msg_id", "differs from the Idempotency-Key header")
    value, name = (header, "Idempotency-Key") if header is not None else (field, "client_msg_id")
    if value is None:
        return None
    try:
        return check_client_msg_id(value, CLIENT_MSG_ID_MAX_CHARS)
    except ChatError as exc:
        raise FieldError(name, str(exc)) from None


def send_request(
    fields: Fields, text_max_bytes: int, idempotency_header: str | None = None
) -> SendRequest:
    """A send: chat (or receiver), sender and text, and an optional idempotency key."""
    members = read_chat(fields)
    sender = read_member(fields, "sender")
    receiver = read_member(fields, "receiver")
    if sender is None:
        raise FieldError("sender", "is required")
    if members is None:
        if receiver is None:
            raise FieldError("chat", "is required (or give receiver)")
        members = (sender, receiver)
    elif sender not in members:
        raise FieldError("sender", "must be one of the chat's two members")
    elif receiver is not None:
        other = members[1] if members[0] == sender else members[0]
        if receiver != other:
            raise FieldError("receiver", "must be the chat's other member")
    text = read_str(fields, "text")
    if text is None:
        raise FieldError("text", "is required (an empty string is allowed)")
    if utf8_longer_than(text, text_max_bytes):
        raise FieldError("text", f"must be at most {text_max_bytes} bytes of UTF-8")
    return SendRequest(
        chat=canonical_chat(*members),
        sender=sender,
        text=text,
        client_msg_id=read_client_msg_id(fields, idempotency_header),
    )


def pull_request(fields: Fields, *, from_text: bool) -> PullRequest:
    """A pull: chat, and cursor, limit and reverse with their defaults (0, 10, false)."""
    members = read_chat(fields)
    if members is None:
        raise FieldError("chat", "is required")
    cursor = read_int(fields, "cursor", CURSOR_MAX, from_text=from_text, blank_ok=True) or 0
    limit = read_int(fields, "limit", PULL_LIMIT_MAX, from_text=from_text) or PULL_LIMIT_DEFAULT
    reverse = read_bool(fields, "reverse", from_text=from_text) or False
    return PullRequest(canonical_chat(*members), cursor, limit, reverse)


def read_user(fields: Fields) -> str:
    user = read_member(fields, "user")
    if user is None:
        raise FieldError("user", "is required")
    return user


def chats_request(fields: Fields, *, from_text: bool) -> ChatsRequest:
    """A conversation list's page: user, limit (1..100, default 20) and an opaque cursor."""
    user = read_user(fields)
    limit = read_int(fields, "limit", CHATS_LIMIT_MAX, from_text=from_text, lo=1)
    cursor = read_str(fields, "cursor")
    after = None
    if cursor:  # "" is what the last page gives as next_cursor: from the newest
        try:
            after = chats_cursor.decode(cursor, user)
        except chats_cursor.CursorError:
            raise FieldError(
                "cursor", "is not a next_cursor of this user's list (give it as it was received)"
            ) from None
    return ChatsRequest(user, limit or CHATS_LIMIT_DEFAULT, after)


def read_request(fields: Fields, *, from_text: bool) -> ReadRequest:
    """A read receipt: chat, user (one of its members) and the send_time read up to."""
    members = read_chat(fields)
    if members is None:
        raise FieldError("chat", "is required")
    user = read_user(fields)
    if user not in members:
        raise FieldError("user", "must be one of the chat's two members")
    send_time = read_int(fields, "send_time", CURSOR_MAX, from_text=from_text)
    if send_time is None:
        raise FieldError("send_time", "is required")
    return ReadRequest(canonical_chat(*members), user, send_time)
