"""The rules of a chat and its members, shared by both tiers.

A chat is an unordered pair of members; its canonical spelling is the two
members sorted by code point and joined by ':'.
"""

from __future__ import annotations

import re

MEMBER_MAX_CHARS = 128

# C0 controls, DEL and C1 controls are never part of a member name.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


class ChatError(ValueError):
    """A member or chat spelling that breaks the rules; the text says which rule."""


def check_member(name: str) -> str:
    """Return `name` if it is a valid member, else raise ChatError."""
    if not name or name.isspace():
        raise ChatError("must not be blank")
    if len(name) > MEMBER_MAX_CHARS:
        raise ChatError(f"must be at most {MEMBER_MAX_CHARS} characters")
    if ":" in name:
        raise ChatError("must not contain ':'")
    if _CONTROL.search(name):
        raise ChatError("must not contain control characters")
    return name


def split_chat(chat: str) -> tuple[str, str]:
    """Split and check a chat spelling, returning its two members in the given order."""
    parts = chat.split(":")
    if len(parts) != 2:
        raise ChatError("must be two members joined by one ':' (\"alice:bob\")")
    first, second = parts
    for member in parts:
        try:
            check_member(member)
        except ChatError as exc:
            raise ChatError(f"member {member!r} {exc}") from None
    return first, second


def canonical_chat(first: str, second: str) -> str:
    """The canonical spelling of the chat between two (already checked) members."""
    return f"{first}:{second}" if first <= second else f"{second}:{first}"


def canonicalize(chat: str) -> str:
    """Check a chat spelling and return its canonical form."""
    return canonical_chat(*split_chat(chat))


def check_client_msg_id(value: str, max_chars: int = 128) -> str:
    """Return an idempotency key if it is usable: 1..max_chars, not blank, no controls."""
    if len(value) > max_chars:
        raise ChatError(f"must be at most {max_chars} characters")
    check_member(value.replace(":", "-"))  # a key may hold ':'; otherwise member rules
    return value


def utf8_longer_than(text: str, limit: int) -> bool:
    """Whether `text` takes more than `limit` bytes of UTF-8 (encoding only if it may)."""
    return len(text) * 4 > limit and len(text.encode("utf-8", "surrogatepass")) > limit
