"""Unit tests of parameter merging and validation in the front end."""

from __future__ import annotations

from typing import Any

import pytest

from contract.requests import FieldError
from http_srv.errors import ApiError
from http_srv.params import (
    merge_fields,
    parse_body,
    parse_urlencoded,
    pull_params,
    send_params,
    wait_param,
)
from rpc_srv.calls import run_pull, run_send

LIMIT = 64 * 1024


def fails(status: int, field: str, fn: Any, *args: Any) -> ApiError:
    with pytest.raises(ApiError) as info:
        fn(*args)
    assert info.value.status_code == status
    assert info.value.msg.startswith(field), info.value.msg
    return info.value


def multipart(fields: dict[str, str], boundary: str = "XyZ") -> tuple[str, bytes]:
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
        for k, v in fields.items()
    ]
    body = ("".join(parts) + f"--{boundary}--\r\n").encode()
    return f"multipart/form-data; boundary={boundary}", body


class TestSources:
    def test_query_first_value_wins(self) -> None:
        """A field repeated in one source keeps its first value."""
        assert parse_urlencoded("limit=1&limit=2", "query") == {"limit": "1"}

    def test_query_keeps_blank_values(self) -> None:
        """`text=` is an empty text, not a missing one."""
        assert parse_urlencoded("text=&a=%20b+c", "query") == {"text": "", "a": " b c"}

    def test_query_invalid_utf8(self) -> None:
        """Percent-encoded bytes that are not UTF-8 are a 400."""
        fails(400, "query", parse_urlencoded, "text=%ff", "query")

    def test_json_body(self) -> None:
        """A JSON object is read as fields; null counts as absent."""
        assert parse_body("application/json", b'{"chat": "a:b", "x": null}') == {"chat": "a:b"}

    @pytest.mark.parametrize(
        "body", [b"[1, 2]", b'"s"', b"{bad", b'{"a": NaN}', b'{"a": Infinity}', b"\xff{}", b"{}}"]
    )
    def test_json_body_must_be_an_object(self, body: bytes) -> None:
        """Invalid JSON, NaN/Infinity and non-objects are 400s about the body."""
        fails(400, "body", parse_body, "application/json", body)

    def test_curl_d_json(self) -> None:
        """An urlencoded body that starts with '{' is JSON (curl -d '{...}')."""
        assert parse_body("application/x-www-form-urlencoded", b' {"a": "1"}') == {"a": "1"}

    def test_no_content_type_json(self) -> None:
        """A body without Content-Type that starts with '{' is JSON."""
        assert parse_body(None, b'{"a": 1}') == {"a": 1}

    def test_urlencoded_form(self) -> None:
        """An urlencoded form gives str fields, first value winning."""
        got = parse_body("application/x-www-form-urlencoded; charset=utf-8", b"a=1&a=2&t=h%C3%A9")
        assert got == {"a": "1", "t": "hé"}

    def test_multipart_form(self) -> None:
        """A multipart form gives its fields."""
        content_type, body = multipart({"sender": "a", "text": "hé llo"})
        assert parse_body(content_type, body) == {"sender": "a", "text": "hé llo"}

    def test_multipart_without_boundary(self) -> None:
        """A multipart Content-Type without a boundary is a 400."""
        fails(400, "body", parse_body, "multipart/form-data", b"x")

    def test_unknown_content_type(self) -> None:
        """A non-JSON body of an unknown type is a 415."""
        fails(415, "body", parse_body, "text/plain", b"hello")

    def test_empty_body(self) -> None:
        """An empty body holds no fields, whatever its type; so does a blank form."""
        assert parse_body("application/json", b"") == {}
        assert parse_body("application/x-www-form-urlencoded", b" \r\n") == {}

    def test_blank_json_body_is_not_json(self) -> None:
        """Blanks alone sent as JSON are not JSON (RFC 8259): a 400 about the body."""
        fails(400, "body", parse_body, "application/json", b" \r")

    def test_body_wins_over_query(self) -> None:
        """JSON or form fields override the query's."""
        merged = merge_fields({"limit": "1", "chat": "a:b"}, {"limit": 5})
        assert merged == {"limit": 5, "chat": "a:b"}


class TestSend:
    def test_chat_canonical(self) -> None:
        """The chat is given back in canonical order."""
        p = send_params({"chat": "b:a", "sender": "b", "text": "hi"}, LIMIT)
        assert (p.chat, p.sender, p.text, p.client_msg_id) == ("a:b", "b", "hi", None)

    def test_sender_and_receiver(self) -> None:
        """sender + receiver form the chat."""
        assert send_params({"sender": "z", "receiver": "y", "text": ""}, LIMIT).chat == "y:z"

    def test_chat_and_receiver_agree(self) -> None:
        """chat and receiver may both be given when they agree."""
        p = send_params({"chat": "a:b", "sender": "a", "receiver": "b", "text": "x"}, LIMIT)
        assert p.chat == "a:b"
        fails(
            400,
            "receiver",
            send_params,
            {"chat": "a:b", "sender": "a", "receiver": "c", "text": "x"},
            LIMIT,
        )

    @pytest.mark.parametrize(
        ("fields", "field"),
        [
            ({"sender": "a", "text": "x"}, "chat"),
            ({"chat": "a:b", "text": "x"}, "sender"),
            ({"chat": "a:b", "sender": "a"}, "text"),
            ({"chat": "a:b", "sender": "c", "text": "x"}, "sender"),
            ({"chat": "a:b:c", "sender": "a", "text": "x"}, "chat"),
            ({"chat": "a: ", "sender": "a", "text": "x"}, "chat"),
            ({"chat": 5, "sender": "a", "text": "x"}, "chat"),
            ({"chat": "a:b", "sender": "a", "text": 5}, "text"),
            ({"chat": "a:b", "sender": ["a"], "text": "x"}, "sender"),
            ({"sender": "a", "receiver": "b:c", "text": "x"}, "receiver"),
            ({"chat": "a:b", "sender": "a", "text": "x", "client_msg_id": 7}, "client_msg_id"),
            ({"chat": "a:b", "sender": "a", "text": "x", "client_msg_id": " "}, "client_msg_id"),
        ],
    )
    def test_bad_fields_name_the_field(self, fields: dict[str, Any], field: str) -> None:
        """Every bad send field is a 400 whose message starts with its name."""
        fails(400, field, send_params, fields, LIMIT)

    def test_text_limit_counts_bytes(self) -> None:
        """Text at the byte limit passes; one byte over is a 400."""
        send_params({"chat": "a:b", "sender": "a", "text": "é" * 5}, 10)
        fails(400, "text", send_params, {"chat": "a:b", "sender": "a", "text": "é" * 5 + "x"}, 10)

    def test_idempotency_header_and_field(self) -> None:
        """The header and the field are the same key; they must agree when both are given."""
        fields = {"chat": "a:b", "sender": "a", "text": "x", "client_msg_id": "k1"}
        assert send_params(fields, LIMIT).client_msg_id == "k1"
        assert send_params(fields, LIMIT, "k1").client_msg_id == "k1"
        assert send_params({**fields, "client_msg_id": None}, LIMIT, "k2").client_msg_id == "k2"
        fails(400, "client_msg_id", send_params, fields, LIMIT, "k2")


class TestPull:
    def test_defaults(self) -> None:
        """cursor 0, limit 10, reverse false."""
        p = pull_params({"chat": "b:a"})
        assert (p.chat, p.cursor, p.limit, p.reverse) == ("a:b", 0, 10, False)

    def test_limit_zero_means_default(self) -> None:
        """limit=0 is the default page size."""
        assert pull_params({"chat": "a:b", "limit": "0"}).limit == 10

    def test_blank_cursor_is_absent(self) -> None:
        """cursor= means no cursor."""
        assert pull_params({"chat": "a:b", "cursor": ""}).cursor == 0

    def test_values(self) -> None:
        """Digits from a query and integers from JSON are both read."""
        p = pull_params({"chat": "a:b", "cursor": "0012", "limit": 1000, "reverse": "TrUe"})
        assert (p.cursor, p.limit, p.reverse) == (12, 1000, True)
        assert pull_params({"chat": "a:b", "cursor": 2**63 - 1}).cursor == 2**63 - 1

    @pytest.mark.parametrize("value", ["true", "1", True, 1, "TRUE"])
    def test_reverse_true(self, value: Any) -> None:
        """true/1 in any letter case, or a JSON true, mean newest first."""
        assert pull_params({"chat": "a:b", "reverse": value}).reverse is True

    @pytest.mark.parametrize("value", ["false", "0", False, 0, "False"])
    def test_reverse_false(self, value: Any) -> None:
        """false/0 in any letter case, or a JSON false, mean oldest first."""
        assert pull_params({"chat": "a:b", "reverse": value}).reverse is False

    @pytest.mark.parametrize(
        ("fields", "field"),
        [
            ({}, "chat"),
            ({"chat": "a"}, "chat"),
            ({"chat": "a:b", "limit": "1001"}, "limit"),
            ({"chat": "a:b", "limit": ""}, "limit"),
            ({"chat": "a:b", "limit": "-1"}, "limit"),
            ({"chat": "a:b", "limit": 1.0}, "limit"),
            ({"chat": "a:b", "limit": True}, "limit"),
            ({"chat": "a:b", "limit": "1e3"}, "limit"),
            ({"chat": "a:b", "cursor": "1.5"}, "cursor"),
            ({"chat": "a:b", "cursor": "1_000"}, "cursor"),
            ({"chat": "a:b", "cursor": "abc"}, "cursor"),
            ({"chat": "a:b", "cursor": "٣"}, "cursor"),
            ({"chat": "a:b", "cursor": str(2**63)}, "cursor"),
            ({"chat": "a:b", "cursor": 2**63}, "cursor"),
            ({"chat": "a:b", "cursor": 1e30}, "cursor"),
            ({"chat": "a:b", "cursor": "9" * 5000}, "cursor"),
            ({"chat": "a:b", "reverse": "yes"}, "reverse"),
            ({"chat": "a:b", "reverse": ""}, "reverse"),
            ({"chat": "a:b", "reverse": 2}, "reverse"),
        ],
    )
    def test_bad_fields_name_the_field(self, fields: dict[str, Any], field: str) -> None:
        """Every bad pull field is a 400 whose message starts with its name."""
        fails(400, field, pull_params, fields)


class TestWait:
    @pytest.mark.parametrize(
        ("value", "seconds"),
        [(None, 0), ("", 0), ("0", 0), ("25", 25), (25, 25), ("31", 30), ("9" * 5000, 30)],
    )
    def test_seconds_clamped_to_the_maximum(self, value: Any, seconds: int) -> None:
        assert wait_param({"wait": value}, 30) == seconds

    @pytest.mark.parametrize("value", ["-1", "1.5", "1e3", " 2", "٣", -1, 1.5, True, 2**63, "x"])
    def test_anything_else_is_a_400_naming_wait(self, value: Any) -> None:
        fails(400, "wait", wait_param, {"wait": value}, 30)


class TestOneRuleBothTiers:
    """The RPC service refuses a bad call with the very words the front end uses.

    Both apply contract/requests.py; here each tier's entry point is called on
    the same JSON-typed fields (a refused call never reaches the store).
    """

    NO_STORE: Any = None

    @pytest.mark.parametrize(
        "fields",
        [
            {"sender": "a", "text": "x"},
            {"chat": "a:b", "text": "x"},
            {"chat": "a:b", "sender": "a"},
            {"chat": "a:b", "sender": "c", "text": "x"},
            {"chat": "a::b", "sender": "a", "text": "x"},
            {"chat": "a:b", "sender": "a", "text": 5},
            {"chat": "a:b", "sender": "a", "text": "é" * (LIMIT // 2 + 1)},
            {"chat": "a:b", "sender": "a", "receiver": "c", "text": "x"},
            {"chat": "a:b", "sender": "a", "text": "x", "client_msg_id": " "},
            {"chat": "a:b", "sender": "a", "text": "x", "client_msg_id": "k" * 129},
        ],
    )
    def test_send(self, fields: dict[str, Any]) -> None:
        words = fails(400, "", send_params, fields, LIMIT).msg
        message = {k: v for k, v in fields.items() if k != "client_msg_id"}
        call = {"message": message, "client_msg_id": fields.get("client_msg_id")}
        with pytest.raises(FieldError) as refused:
            run_send(self.NO_STORE, LIMIT, call)
        assert str(refused.value) == words

    @pytest.mark.parametrize(
        "fields",
        [
            {},
            {"chat": "a"},
            {"chat": "a:b", "limit": 1001},
            {"chat": "a:b", "limit": -1},
            {"chat": "a:b", "cursor": 2**63},
            {"chat": "a:b", "cursor": 1.5},
            {"chat": "a:b", "reverse": 2},
            {"chat": "a:b", "reverse": "maybe"},
        ],
    )
    def test_pull(self, fields: dict[str, Any]) -> None:
        words = fails(400, "", pull_params, fields).msg
        with pytest.raises(FieldError) as refused:
            run_pull(self.NO_STORE, LIMIT, fields)
        assert str(refused.value) == words

    def test_rpc_reads_json_types_only(self) -> None:
        """Text forms of numbers and booleans are the front end's (query, form), not the RPC's."""
        assert pull_params({"chat": "a:b", "limit": "5", "reverse": "true"}).limit == 5
        for fields in ({"chat": "a:b", "limit": "5"}, {"chat": "a:b", "reverse": "true"}):
            with pytest.raises(FieldError):
                run_pull(self.NO_STORE, LIMIT, fields)
