"""The opaque cursor of a conversation list: where the next page of ``GET /api/chats`` starts.

A list is ordered by (last send_time, chat), most recent first; a page ends
at one such pair, and the next page holds what comes after it. The cursor is
that pair, ``<send_time>:<chat>``, in URL-safe base64 without padding, so it
can go in a query string as it is. Clients must treat it as opaque: only the
RPC service reads it, and a string that does not decode into a pair of the
user's own list is refused (a 400 naming ``cursor``). It is not signed: one
made by hand that names a real position works as the server's would.
"""

from __future__ import annotations

import base64
import binascii
from typing import NamedTuple

from contract.chat import MEMBER_MAX_CHARS, ChatError, canonicalize
from contract.wire import CURSOR_MAX

# The longest pair: 19 digits, ':', and a chat of two members of 128 code points of up
# to 4 bytes each joined by ':'; its unpadded base64 is this many characters.
_PAIR_MAX_BYTES = 19 + 1 + 2 * MEMBER_MAX_CHARS * 4 + 1
CURSOR_MAX_CHARS = (4 * _PAIR_MAX_BYTES + 2) // 3


class ChatsCursor(NamedTuple):
    send_time: int
    chat: str  # canonical


class CursorError(ValueError):
    """Not a cursor this service gave."""


def encode(cursor: ChatsCursor) -> str:
    raw = f"{cursor.send_time}:{cursor.chat}".encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode(value: str, user: str) -> ChatsCursor:
    """The pair a cursor of `user`'s list stands for; CursorError if it is not one."""
    if len(value) > CURSOR_MAX_CHARS or not value.isascii():
        raise CursorError
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        text = raw.decode("utf-8")
    except (binascii.Error, ValueError):
        raise CursorError from None
    digits, _, chat = text.partition(":")
    if not (digits.isascii() and digits.isdigit()) or int(digits) > CURSOR_MAX:
        raise CursorError
    try:
        canonical = canonicalize(chat)
    except ChatError:
        raise CursorError from None
    cursor = ChatsCursor(int(digits), chat)
    if canonical != chat or user not in chat.split(":") or encode(cursor) != value:
        raise CursorError  # the last check refuses other spellings of the same bytes
    return cursor
