"""Unit tests of the member and chat rules."""

from __future__ import annotations

import pytest

from contract.chat import (
    ChatError,
    canonical_chat,
    canonicalize,
    check_client_msg_id,
    check_member,
    split_chat,
    utf8_longer_than,
)


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [
        ("alice:bob", "alice:bob"),
        ("bob:alice", "alice:bob"),
        ("a:a", "a:a"),
        ("B:a", "B:a"),  # case-sensitive, code point order: 'B' < 'a'
        ("zoé:émile", "zoé:émile"),
        ("😀:x", "x:😀"),
    ],
)
def test_canonical_spelling(spelling: str, canonical: str) -> None:
    """Both spellings of a chat give the two members sorted by code point."""
    assert canonicalize(spelling) == canonical
    first, second = spelling.split(":")
    assert canonicalize(f"{second}:{first}") == canonical


@pytest.mark.parametrize(
    "spelling",
    [
        "",
        "alice",
        "a:b:c",
        ":b",
        "a:",
        " :b",
        "a:\t",
        "a\x00:b",
        "a:b\x7f",
        "a\x85:b",
        "a" * 129 + ":b",
    ],
)
def test_bad_chats(spelling: str) -> None:
    """Wrong member count, blank, control characters and overlong members are refused."""
    with pytest.raises(ChatError):
        split_chat(spelling)


def test_member_length_counts_code_points() -> None:
    """128 emoji (512 bytes) is a valid member; 129 is not."""
    assert check_member("😀" * 128)
    with pytest.raises(ChatError):
        check_member("😀" * 129)


def test_canonical_chat_orders() -> None:
    """canonical_chat sorts its two members."""
    assert canonical_chat("z", "a") == "a:z"
    assert canonical_chat("a", "z") == "a:z"


def test_client_msg_id_rules() -> None:
    """Keys may hold ':' but not controls, blanks or more than the maximum length."""
    assert check_client_msg_id("retry:1") == "retry:1"
    for bad in ["", "  ", "a\nb", "x" * 129]:
        with pytest.raises(ChatError):
            check_client_msg_id(bad)


def test_utf8_length() -> None:
    """The text limit counts UTF-8 bytes, not characters."""
    assert not utf8_longer_than("é" * 10, 20)
    assert utf8_longer_than("é" * 11, 20)
    assert not utf8_longer_than("a" * 20, 20)
    assert utf8_longer_than("a" * 21, 20)
