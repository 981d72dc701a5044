"""GET /api/chats and POST /api/read through the whole service, on real processes.

Most tests share one stack of two RPC replicas, each with a front end of its
own (`replicas`): sends go through one, reads and lists through the other,
so every answer is seen across replicas. The Python model of the contract is
`tests.test_chats_store.Model`.
"""

from __future__ import annotations

import base64
import random
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple
from urllib.parse import quote, urlencode

import orjson
import pytest
import redis
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.crc import key_slot

from contract.chat import canonical_chat, canonicalize
from rpc_srv.store import chat_key, list_key
from tests.client import http_call
from tests.cluster import LocalCluster
from tests.stacks import StackFactory
from tests.test_chats_store import (
    HUGE,
    STEP,
    Model,
    all_chats,
    member_names,
    read_time,
    tie_peers,
)
from tests.test_longpoll import eventually, gauge
from tests.test_params import multipart

JSON = {"Content-Type": "application/json"}
FORM = {"Content-Type": "application/x-www-form-urlencoded"}
WAITING = "pullchat_http_waiting_pulls"


class Replicas(NamedTuple):
    waiter: str  # a front end on the first RPC replica
    sender: str  # a front end on the second


def start_replicas(stacks: StackFactory, redis_url: str, **env: str) -> Replicas:
    s = stacks(redis_url, start=False, RPC_DRAIN_SECONDS="0.5", **env)
    first, second = s.add_rpc(port=0), s.add_rpc(port=0)
    return Replicas(
        s.add_http(port=0, RPC_URL=first.url).url, s.add_http(port=0, RPC_URL=second.url).url
    )


@pytest.fixture(scope="module")
def replicas(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Replicas]:
    stacks = StackFactory(tmp_path_factory.mktemp("chats"))
    try:
        yield start_replicas(stacks, redis_url)
    finally:
        stacks.stop_all()


# -- requests ------------------------------------------------------------------------


def query(params: dict[str, Any]) -> str:
    return urlencode(params, quote_via=quote)


def send(base: str, chat: str, sender: str, text: str, key: str | None = None) -> dict[str, Any]:
    headers = {**JSON, **({"Idempotency-Key": key} if key else {})}
    body = orjson.dumps({"chat": chat, "sender": sender, "text": text})
    status, reply, _ = http_call(base, "POST", "/api/send", body, headers)
    assert status == 200, reply
    assert reply["chat"] == canonicalize(chat)
    return reply  # type: ignore[no-any-return]


def chats(
    base: str, user: str | None, timeout: float = 10, **params: Any
) -> tuple[int, Any, float]:
    fields = {**({"user": user} if user is not None else {}), **params}
    return http_call(base, "GET", f"/api/chats?{query(fields)}", timeout=timeout)


def listing(base: str, user: str, **params: Any) -> dict[str, Any]:
    status, body, _ = chats(base, user, **params)
    assert status == 200, body
    assert (body["code"], body["msg"]) == (0, "success")
    return body  # type: ignore[no-any-return]


def walk(base: str, user: str, limit: int) -> list[dict[str, Any]]:
    """Every page of `user`'s list with next_cursor, each page checked on its own."""
    seen: list[dict[str, Any]] = []
    cursor = ""
    for _ in range(1000):
        page = listing(base, user, limit=limit, cursor=cursor)
        assert len(page["chats"]) <= limit
        seen += page["chats"]
        if not page["has_more"]:
            assert page["next_cursor"] == ""
            return seen
        assert len(page["chats"]) == limit and page["next_cursor"], page
        cursor = page["next_cursor"]
    raise AssertionError("the walk did not end")


def read(
    base: str, fields: dict[str, Any], source: str = "json", timeout: float = 10
) -> tuple[int, Any]:
    """POST /api/read with the fields in a JSON body, a form, or the query string."""
    if source == "json":
        status, body, _ = http_call(base, "POST", "/api/read", orjson.dumps(fields), JSON, timeout)
    elif source == "form":
        form = query({k: str(v) for k, v in fields.items()}).encode()
        status, body, _ = http_call(base, "POST", "/api/read", form, FORM, timeout)
    else:
        path = f"/api/read?{query({k: str(v) for k, v in fields.items()})}"
        status, body, _ = http_call(base, "POST", path, timeout=timeout)
    return status, body


def mark_read(base: str, chat: str, user: str, send_time: int) -> dict[str, Any]:
    status, body = read(base, {"chat": chat, "user": user, "send_time": send_time})
    assert status == 200, body
    assert (body["code"], body["msg"], body["user"]) == (0, "success", user)
    return body  # type: ignore[no-any-return]


def entry_of(base: str, user: str, chat: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [e for e in listing(base, user)["chats"] if e["chat"] == chat]
    assert len(found) == 1, found
    return found[0]


def names(entries: list[dict[str, Any]]) -> list[str]:
    return [e["chat"] for e in entries]


def assert_400(status: int, body: Any, field: str, case: object) -> None:
    assert status == 400, (case, body)
    assert body["code"] == 400 and body["msg"].startswith(f"{field}:"), (case, body)


def check_lists(bases: list[str], model: Model, users: list[str], limits: list[int]) -> None:
    """Each user's list (whole through every front end, and walked) is the model's."""
    for i, user in enumerate(users):
        expected = model.entries(user)
        for base in bases:
            whole = listing(base, user)
            assert whole["chats"] == expected, user
            assert (whole["has_more"], whole["next_cursor"]) == (False, "")
            assert whole["latest_activity"] == model.latest(user)
        for limit in limits:
            assert walk(bases[i % len(bases)], user, limit) == expected, (user, limit)


# -- bad input -------------------------------------------------------------------------


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def test_bad_chats_requests_are_400s_naming_the_field(replicas: Replicas) -> None:
    base = replicas.waiter
    # A cursor of len(raw) % 3 == 1 bytes, "<send_time>:<chat>", ends in 4 unused bits.
    tag = uuid.uuid4().hex[:8]
    peers = [f"p{i}-{tag}" for i in range(3)]
    digits = len(str(time.time_ns() // 1000))
    user = next(
        u
        for u in (f"bad{pad}-{tag}" for pad in ("", "x", "xx"))
        if (digits + 1 + len(canonical_chat(u, peers[-1]))) % 3 == 1
    )
    stranger, other = f"s-{tag}", f"o-{tag}"
    for peer in (user, other):  # the newest is the one without user: its cursor names it
        send(replicas.sender, canonical_chat(stranger, peer), stranger, "x")
    strangers_cursor = listing(base, stranger, limit=1)["next_cursor"]
    strangers_raw = base64.urlsafe_b64decode(strangers_cursor + "==")
    assert strangers_cursor and user.encode() not in strangers_raw
    for peer in peers:
        send(replicas.sender, canonical_chat(user, peer), peer, "hi")
    before = listing(base, user)
    real = listing(base, user, limit=1)["next_cursor"]
    raw = base64.urlsafe_b64decode(real + "=" * (-len(real) % 4))
    assert len(raw) % 3 == 1, raw  # so the spellings below differ from it in their bits only
    send_time, _, chat = raw.decode().partition(":")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    flipped = real[:-1] + alphabet[alphabet.index(real[-1]) ^ 1]
    assert base64.urlsafe_b64decode(flipped + "==") == raw
    first, second = chat.split(":")
    page_two = listing(base, user, limit=1, cursor=real)  # the cursor as given is good
    assert page_two["chats"] == before["chats"][1:2] and page_two["has_more"]
    cursors = [
        "garbage!",
        "abc",
        "=",
        real + "==",  # padded
        flipped,  # the same bytes, other unused bits
        real + "\n",  # the decoder would skip it
        real[:-1],
        b64(f"0{send_time}:{chat}".encode()),  # a leading zero
        b64(f"{send_time}:{second}:{first}".encode()),  # the chat not canonical
        b64(f"{send_time}:{chat}:x".encode()),
        b64(f"{2**63}:{chat}".encode()),
        b64(f"-1:{chat}".encode()),
        b64(f"{send_time}:".encode()),
        b64(b"\xff\xfe"),
        strangers_cursor,  # a cursor of another user's list
        "é" + real,
        "A" * 401,
    ]
    cases: list[tuple[dict[str, Any], str]] = [
        ({}, "user"),
        ({"limit": "1"}, "user"),
        ({"user": ""}, "user"),
        ({"user": " "}, "user"),
        ({"user": "a:b"}, "user"),
        ({"user": "x" * 129}, "user"),
        ({"user": "a\x01b"}, "user"),
        *(({"user": user, "limit": bad}, "limit") for bad in ("0", "101", "x", "-1", "1.5", "")),
        *(({"user": user, "cursor": bad}, "cursor") for bad in cursors),
        *(({"user": user, "since": bad}, "since") for bad in ("-1", "1.5", "abc", "1e3")),
        *(({"user": user, "wait": bad}, "wait") for bad in ("-1", "1.5", "abc", " 2")),
        *(({"user": user, "wait": "3", "since": bad}, "since") for bad in ("x", "-5")),
    ]
    for params, field in cases:
        status, body, seconds = http_call(base, "GET", f"/api/chats?{query(params)}")
        assert_400(status, body, field, params)
        assert seconds < 2, params  # a refused wait does not wait
    # The same rules for fields of a JSON body (GET with a body, as Postman sends).
    json_cases: list[tuple[dict[str, Any], str]] = [
        ({"user": 5}, "user"),
        ({"user": user, "limit": 1.5}, "limit"),
        ({"user": user, "limit": True}, "limit"),
        ({"user": user, "limit": 0}, "limit"),
        ({"user": user, "cursor": 12}, "cursor"),
        ({"user": user, "since": -1}, "since"),
    ]
    for fields, field in json_cases:
        status, body, _ = http_call(base, "GET", "/api/chats", orjson.dumps(fields), JSON)
        assert_400(status, body, field, fields)
    # What is just inside the rules is answered; and nothing above changed anything.
    assert listing(base, "x" * 128)["chats"] == []
    assert listing(base, user, limit=100)["chats"] == before["chats"]
    assert listing(base, user) == before


def test_bad_reads_are_400s_and_change_nothing(replicas: Replicas) -> None:
    user, peer = member_names(3)[1:3]
    chat = canonical_chat(user, peer)
    times = [send(replicas.sender, chat, peer, f"m{i}")["send_time"] for i in range(3)]
    mark_read(replicas.waiter, chat, user, times[0])
    state = {"read_cursor": times[0], "unread": 2}
    good = {"chat": chat, "user": user, "send_time": HUGE}
    text_cases: list[tuple[dict[str, Any], str]] = [
        ({"chat": chat, "send_time": HUGE}, "user"),
        ({**good, "user": ""}, "user"),
        ({**good, "user": " "}, "user"),
        ({**good, "user": "a:b"}, "user"),
        ({**good, "user": "u" * 129}, "user"),
        ({**good, "user": "a\x7fb"}, "user"),
        ({**good, "user": user.upper()}, "user"),  # not a member: names are case-sensitive
        ({**good, "user": f"{user}x"}, "user"),
        ({"chat": chat, "user": user}, "send_time"),
        *(({**good, "send_time": bad}, "send_time") for bad in ("-1", "1.5", "abc", "1e3", "")),
        ({**good, "send_time": str(2**63)}, "send_time"),
        ({"user": user, "send_time": HUGE}, "chat"),
        ({**good, "chat": user}, "chat"),
        ({**good, "chat": f"{chat}:x"}, "chat"),
    ]
    json_cases: list[tuple[dict[str, Any], str]] = [
        ({**good, "send_time": -1}, "send_time"),
        ({**good, "send_time": 1.5}, "send_time"),
        ({**good, "send_time": float(times[-1])}, "send_time"),
        ({**good, "send_time": True}, "send_time"),
        ({**good, "send_time": None}, "send_time"),
        ({**good, "user": None}, "user"),
        ({**good, "user": 7}, "user"),
    ]
    cases = [(f, field, src) for f, field in text_cases for src in ("json", "form", "query")]
    cases += [(f, field, "json") for f, field in json_cases]
    for fields, field, source in cases:
        status, body = read(replicas.waiter, fields, source)
        assert_400(status, body, field, (fields, source))
        for base in replicas:
            entry = entry_of(base, user, chat)
            assert {k: entry[k] for k in state} == state, (fields, source)
        assert entry_of(replicas.waiter, peer, chat)["read_cursor"] == times[-1]
    # The cursor still moves for a good read.
    assert mark_read(replicas.sender, chat, user, HUGE)["unread"] == 0


# -- basics ----------------------------------------------------------------------------


def test_a_chat_is_listed_for_both_members_from_its_first_message(replicas: Replicas) -> None:
    waiter, sender = replicas
    zoe, amy, bob = member_names(3)
    empty = listing(waiter, zoe)
    assert empty == {
        "code": 0,
        "msg": "success",
        "chats": [],
        "has_more": False,
        "next_cursor": "",
        "latest_activity": 0,
    }
    ab = canonical_chat(amy, bob)
    first = send(sender, f"{bob}:{amy}", bob, "hi")  # spelled either way
    message = {"chat": ab, "text": "hi", "sender": bob, "send_time": first["send_time"]}
    assert listing(waiter, amy)["chats"] == [
        {"chat": ab, "peer": bob, "last_message": message, "unread": 1, "read_cursor": 0}
    ]
    assert listing(waiter, bob)["chats"] == [
        {
            "chat": ab,
            "peer": amy,
            "last_message": message,
            "unread": 0,  # their own send is read
            "read_cursor": first["send_time"],
        }
    ]
    # A newer chat comes first; latest_activity is the newest send_time of all.
    za = canonical_chat(zoe, amy)
    second = send(sender, za, zoe, "later")
    page = listing(waiter, amy)
    assert [(e["chat"], e["peer"]) for e in page["chats"]] == [(za, zoe), (ab, bob)]
    assert page["latest_activity"] == second["send_time"] > first["send_time"]
    assert listing(waiter, bob)["latest_activity"] == first["send_time"]
    # And the older one comes first again once it has the newest message.
    third = send(sender, ab, amy, "back")
    page = listing(waiter, amy)
    assert names(page["chats"]) == [ab, za]
    assert page["chats"][0]["last_message"]["text"] == "back"
    assert page["chats"][0]["unread"] == 0  # amy's own send read everything before it
    assert page["latest_activity"] == third["send_time"]
    assert listing(waiter, bob)["chats"][0]["unread"] == 1


def test_read_cursor_moves_forward_only_and_stops_at_the_newest(replicas: Replicas) -> None:
    waiter, sender = replicas
    amy, bob = member_names(3)[1:3]
    chat = canonical_chat(amy, bob)
    times = [send(sender, chat, bob, f"m{i}")["send_time"] for i in range(4)]
    assert entry_of(waiter, amy, chat)["unread"] == 4
    answer = mark_read(waiter, f"{bob}:{amy}", amy, times[1])
    assert answer == {
        "code": 0,
        "msg": "success",
        "chat": chat,  # canonical
        "user": amy,
        "read_cursor": times[1],
        "unread": 2,
    }
    for older in (times[0], 0, times[1] - 1):
        assert mark_read(sender, chat, amy, older)["read_cursor"] == times[1]
    assert {k: entry_of(waiter, amy, chat)[k] for k in ("read_cursor", "unread")} == {
        "read_cursor": times[1],
        "unread": 2,
    }
    # Beyond the newest: stops at it, and a later message still counts.
    answer = mark_read(waiter, chat, amy, times[-1] + 10**9)
    assert (answer["read_cursor"], answer["unread"]) == (times[-1], 0)
    later = send(sender, chat, bob, "later")["send_time"]
    entry = entry_of(waiter, amy, chat)
    assert (entry["read_cursor"], entry["unread"]) == (times[-1], 1)
    assert entry["last_message"]["send_time"] == later
    assert mark_read(waiter, chat, amy, HUGE)["read_cursor"] == later
    # bob's cursor is his own: his sends read everything.
    assert mark_read(waiter, chat, bob, 0) == {
        "code": 0,
        "msg": "success",
        "chat": chat,
        "user": bob,
        "read_cursor": later,
        "unread": 0,
    }


def test_read_of_a_chat_without_messages(replicas: Replicas) -> None:
    amy, bob = member_names(3)[1:3]
    chat = canonical_chat(amy, bob)
    for upto in (0, 5, HUGE):
        answer = mark_read(replicas.waiter, chat, amy, upto)
        assert (answer["chat"], answer["read_cursor"], answer["unread"]) == (chat, 0, 0)
    assert listing(replicas.waiter, amy)["chats"] == []
    sent = send(replicas.sender, chat, bob, "first")
    entry = entry_of(replicas.waiter, amy, chat)
    assert (entry["read_cursor"], entry["unread"]) == (0, 1)
    assert listing(replicas.waiter, amy)["latest_activity"] == sent["send_time"]


def test_fields_come_from_query_form_or_json(replicas: Replicas) -> None:
    waiter, sender = replicas
    amy, bob = member_names(3)[1:3]
    chat = canonical_chat(amy, bob)
    times = [send(sender, chat, bob, f"m{i}")["send_time"] for i in range(6)]
    fields = {"chat": chat, "user": amy}
    for i, source in enumerate(("query", "form", "json"), start=1):
        status, body = read(waiter, {**fields, "send_time": times[i - 1]}, source)
        assert status == 200, (source, body)
        assert (body["read_cursor"], body["unread"]) == (times[i - 1], 6 - i), source
    content_type, form = multipart({**fields, "send_time": str(times[3])})
    status, body, _ = http_call(waiter, "POST", "/api/read", form, {"Content-Type": content_type})
    assert status == 200 and (body["read_cursor"], body["unread"]) == (times[3], 2), body
    # One field in several sources: JSON body over form over query.
    path = f"/api/read?{query({**fields, 'send_time': times[5]})}"
    body_json = orjson.dumps({"send_time": times[4]})
    status, body, _ = http_call(waiter, "POST", path, body_json, JSON)
    assert status == 200 and body["read_cursor"] == times[4], body
    path = f"/api/read?{query({**fields, 'send_time': HUGE})}"
    form_body = query({"send_time": times[4]}).encode()
    status, body, _ = http_call(waiter, "POST", path, form_body, FORM)
    assert status == 200 and body["read_cursor"] == times[4], body
    # /api/chats likewise: the user from a JSON body (GET with a body) or a form.
    whole = listing(waiter, amy)
    for body_bytes, headers in (
        (orjson.dumps({"user": amy}), JSON),
        (query({"user": amy}).encode(), FORM),
        (orjson.dumps({"user": amy, "limit": 100}), {}),  # no Content-Type, starts with '{'
    ):
        status, got, _ = http_call(waiter, "GET", "/api/chats", body_bytes, headers)
        assert status == 200 and got == whole, got
    # The body's user wins over the query's; the query's limit still counts.
    send(sender, canonical_chat(amy, amy), amy, "to self")
    path = f"/api/chats?{query({'user': bob, 'limit': 1})}"
    status, got, _ = http_call(waiter, "GET", path, orjson.dumps({"user": amy}), JSON)
    assert status == 200 and got == listing(waiter, amy, limit=1), got
    assert got["has_more"] and got["chats"][0]["chat"] == canonical_chat(amy, amy)


def test_default_and_largest_limits(replicas: Replicas) -> None:
    user = member_names(1)[0]
    tag = uuid.uuid4().hex[:6]
    model = Model()
    for i in range(22):
        chat = canonical_chat(user, f"p{i:02}-{tag}")
        model.sent(chat, user, "x", send(replicas.sender, chat, user, "x")["send_time"])
    page = listing(replicas.waiter, user)
    assert page["chats"] == model.entries(user)[:20] and page["has_more"]
    assert page["next_cursor"]
    rest = listing(replicas.waiter, user, cursor=page["next_cursor"])
    assert rest["chats"] == model.entries(user)[20:] and not rest["has_more"]
    assert rest["latest_activity"] == page["latest_activity"] == model.latest(user)
    whole = listing(replicas.waiter, user, limit=100)
    assert whole["chats"] == model.entries(user) and whole["next_cursor"] == ""


# -- the model, at random, over HTTP -----------------------------------------------------


@settings(max_examples=30, deadline=None, derandomize=True)
@given(
    count=st.integers(3, 4),
    steps=st.lists(STEP, min_size=8, max_size=30),
    limits=st.lists(st.integers(1, 5), min_size=1, max_size=3),
)
def test_lists_follow_the_model_over_http(
    replicas: Replicas, count: int, steps: list[tuple[str, int, bool, int]], limits: list[int]
) -> None:
    """Random sends and reads among 3-4 members, through both front ends (HTTP).

    After each step every member's whole list equals the model (order with
    ties by chat bytes, last message, unread, read cursor, latest_activity)
    and one member's list, walked with one of the limits 1..5, returns each
    chat once in order; at the end every list is walked with every limit.
    """
    bases = list(replicas)
    users = member_names(count)
    chats_ = all_chats(users)
    model = Model()
    for n, (kind, which, side, pick) in enumerate(steps):
        base = bases[n % 2]
        chat = chats_[which % len(chats_)]
        member = chat.split(":")[side]
        if kind == "send":
            text = f"{pick} ünï\n{which}"
            sent = send(base, chat, member, text)
            assert not sent["duplicate"]
            model.sent(chat, member, text, sent["send_time"])
        else:
            upto = read_time(model.chat(chat).messages, pick)
            answer = mark_read(base, chat, member, upto)
            assert {k: answer[k] for k in ("read_cursor", "unread")} == model.read(
                chat, member, upto
            )
        for user in users:
            whole = listing(bases[(n + 1) % 2], user)
            assert whole["chats"] == model.entries(user), user
            assert whole["latest_activity"] == model.latest(user)
            assert not whole["has_more"]
        walker = users[n % len(users)]
        assert walk(base, walker, limits[n % len(limits)]) == model.entries(walker)
    check_lists(bases, model, users, limits)


# -- ties --------------------------------------------------------------------------------


def build_ties(client: redis.Redis | redis.RedisCluster, user: str) -> list[str]:
    """Chats of `user` whose newest messages share send_times, as send.lua would write them.

    Returned in list order: (send_time, chat bytes) descending.
    """
    at = time.time_ns() // 1000 - 10_000_000  # Redis's clock too (loopback): a send moves above
    built = []
    levels = [at + 1] + [at] * 7 + [at - 1] * 2
    for peer, send_time in zip(tie_peers(user), levels, strict=True):
        chat = canonical_chat(user, peer)
        client.xadd(chat_key(chat), {"0": orjson.dumps(f"at {send_time}")}, id=f"{send_time}-1")
        for member in (user, peer):
            client.zadd(list_key(member), {chat: send_time})
        built.append((send_time, chat.encode(), chat))
    return [chat for *_, chat in sorted(built, reverse=True)]


def test_ties_page_every_chat_once(replicas: Replicas, redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        user = f"tie-{uuid.uuid4().hex[:8]}"
        order = build_ties(client, user)
    finally:
        client.close()
    for limit in (1, 2, 3, 7):
        walked = walk(replicas.waiter, user, limit)
        assert names(walked) == order, limit
        assert all(e["unread"] == 1 and e["read_cursor"] == 0 for e in walked)
    assert listing(replicas.sender, user)["chats"] == walked


def test_walk_while_activity_changes(replicas: Replicas, redis_url: str) -> None:
    """Mid-walk messages move their chats to the top; every other chat comes exactly once."""
    client = redis.Redis.from_url(redis_url)
    try:
        user = f"walk-{uuid.uuid4().hex[:8]}"
        order = build_ties(client, user)
    finally:
        client.close()
    moved = [order[5], order[0]]  # one not walked yet (inside the tie), one walked
    newcomer = canonical_chat(user, f"new-{uuid.uuid4().hex[:6]}")
    page = listing(replicas.waiter, user, limit=2)
    seen = names(page["chats"])
    step = 0
    while page["has_more"]:
        if step == 0:
            for chat in (*moved, newcomer):
                send(replicas.sender, chat, user, f"news in {chat}")
        step += 1
        page = listing(replicas.waiter, user, limit=2, cursor=page["next_cursor"])
        seen += names(page["chats"])
    unchanged = [c for c in order if c not in moved]
    assert len(seen) == len(set(seen)), seen
    assert [c for c in seen if c in unchanged] == unchanged
    assert order[5] not in seen and newcomer not in seen
    assert names(walk(replicas.waiter, user, 2)) == [newcomer, *reversed(moved), *unchanged]


# -- concurrency ---------------------------------------------------------------------------


def run_concurrently(bases: list[str], ops: int, seed: int) -> None:
    """One thread per member sends, reads and lists its chats through every front end.

    Each read's cursor is never below the member's previous one for that
    chat, nor below their own last send there; unread is never negative.
    Then every list equals the model built from the sends' replies.
    """
    users = member_names(4)
    chats_ = all_chats(users)
    model = Model()
    lock = threading.Lock()
    start = threading.Barrier(len(users))

    def member(i: int, user: str) -> None:
        rng = random.Random(seed + i)
        mine = [c for c in chats_ if user in c.split(":")]
        known: dict[str, list[int]] = {c: [] for c in mine}
        cursor = dict.fromkeys(mine, 0)  # the highest cursor seen, for this member
        start.wait(10)
        for n in range(ops):
            base = bases[(n + i) % len(bases)]
            chat = rng.choice(mine)
            roll = rng.random()
            if roll < 0.5:
                text = f"{user} {n}"
                t = send(base, chat, user, text)["send_time"]
                with lock:
                    model.sent(chat, user, text, t)
                known[chat].append(t)
                cursor[chat] = max(cursor[chat], t)
            elif roll < 0.85:
                upto = rng.choice([0, HUGE, *known[chat][-3:], *(k + 1 for k in known[chat][-2:])])
                answer = mark_read(base, chat, user, upto)
                assert answer["unread"] >= 0, answer
                assert answer["read_cursor"] >= cursor[chat], (answer, cursor[chat])
                if known[chat] and upto >= max(known[chat]):
                    assert answer["read_cursor"] >= max(known[chat])
                cursor[chat] = answer["read_cursor"]
                with lock:
                    model.saw_cursor(chat, user, answer["read_cursor"])
            else:
                # (Not checked here: the order of a page against its last messages. The
                # order is the list's; a message stored while the page is read shows in
                # its chat's entry, which then sits lower than its newest message says.)
                page = listing(base, user)
                for e in page["chats"]:
                    assert e["unread"] >= 0, e
                    assert e["read_cursor"] >= cursor[e["chat"]], (e, cursor[e["chat"]])
                    cursor[e["chat"]] = e["read_cursor"]
                    known[e["chat"]].append(e["last_message"]["send_time"])

    with ThreadPoolExecutor(len(users)) as pool:
        for done in [pool.submit(member, i, u) for i, u in enumerate(users)]:
            done.result(timeout=60)
    check_lists(bases, model, users, [2])
    for chat, c in model.chats.items():
        status, page, _ = http_call(
            bases[0], "GET", f"/api/pull?{query({'chat': chat, 'limit': 1000})}"
        )
        assert status == 200 and page["messages"] == c.messages, chat


def test_concurrent_sends_and_reads_through_two_replicas(replicas: Replicas) -> None:
    run_concurrently(list(replicas), 60, seed=7)


# -- waiting on /api/chats ---------------------------------------------------------------


def wait_for_chats(
    waiter: str, user: str, act: Callable[[], int], **params: Any
) -> tuple[int, Any, float, float]:
    """A waiting chats request, then `act` (a send) once it is parked.

    Returns (status, body, seconds of the request, seconds from act's answer to the reply).
    """
    with ThreadPoolExecutor(1) as pool:
        waiting = pool.submit(chats, waiter, user, 20, **params)
        assert eventually(lambda: gauge(waiter, WAITING) >= 1)
        time.sleep(0.05)
        act()
        acted = time.monotonic()
        status, body, seconds = waiting.result(timeout=20)
    return status, body, seconds, time.monotonic() - acted


def test_wait_answers_after_a_message_to_any_chat(replicas: Replicas) -> None:
    """Held until a message newer than since, in any chat (a new one too), via another replica."""
    waiter, sender = replicas
    zoe, amy, bob = member_names(3)
    old, new = canonical_chat(amy, bob), canonical_chat(amy, zoe)
    send(sender, old, bob, "old")
    send(sender, new, zoe, "new")
    latest = listing(waiter, amy)["latest_activity"]
    sent: dict[str, int] = {}

    def to_old() -> int:
        sent["old"] = send(sender, old, bob, "wake")["send_time"]
        return sent["old"]

    status, body, seconds, delay = wait_for_chats(waiter, amy, to_old, wait=5, since=latest)
    assert status == 200, body
    assert body["latest_activity"] == sent["old"] > latest
    assert names(body["chats"]) == [old, new]
    assert body["chats"][0]["last_message"]["text"] == "wake"
    assert seconds < 4.5 and delay < 2, (seconds, delay)
    # A chat the user never had: its first message wakes the wait too.
    fresh = canonical_chat(amy, f"fresh-{uuid.uuid4().hex[:6]}")

    def to_fresh() -> int:
        sent["fresh"] = send(sender, fresh, fresh.split(":")[1], "hello")["send_time"]
        return sent["fresh"]

    status, body, seconds, delay = wait_for_chats(waiter, amy, to_fresh, wait=5, since=sent["old"])
    assert status == 200, body
    assert names(body["chats"]) == [fresh, old, new]
    assert body["latest_activity"] == sent["fresh"]
    assert body["chats"][0]["unread"] == 1
    assert seconds < 4.5 and delay < 2, (seconds, delay)


def test_wait_with_nothing_new_answers_the_same_list_at_wait(replicas: Replicas) -> None:
    amy, bob = member_names(3)[1:3]
    chat = canonical_chat(amy, bob)
    send(replicas.sender, chat, bob, "x")
    before = listing(replicas.waiter, amy)
    latest = before["latest_activity"]
    status, body, seconds = chats(replicas.waiter, amy, wait=1, since=latest)
    assert status == 200 and body == before, body
    assert 0.9 < seconds < 3, seconds
    # A read is no new message: it does not answer the wait either.
    status, body, seconds, _ = wait_for_chats(
        replicas.waiter,
        amy,
        lambda: mark_read(replicas.sender, chat, amy, HUGE)["unread"],
        wait=2,
        since=latest,
    )
    assert status == 200 and body["latest_activity"] == latest, body
    assert names(body["chats"]) == [chat]
    assert 1.9 < seconds < 4, seconds


def test_wait_with_an_older_since_answers_at_once(replicas: Replicas) -> None:
    amy, bob = member_names(3)[1:3]
    send(replicas.sender, canonical_chat(amy, bob), bob, "x")
    before = listing(replicas.waiter, amy)
    for params in (
        {"since": before["latest_activity"] - 1},
        {"since": 0},
        {},  # since absent: 0
    ):
        status, body, seconds = chats(replicas.waiter, amy, wait=5, **params)
        assert status == 200 and body == before, (params, body)
        assert seconds < 2, (params, seconds)


def first_message_wakes_the_wait(replicas: Replicas) -> None:
    """A user without chats waits on /api/chats; a peer's first message answers it."""
    amy, bob = member_names(3)[1:3]
    chat = canonical_chat(amy, bob)
    sent: dict[str, int] = {}

    def first() -> int:
        sent["t"] = send(replicas.sender, chat, bob, "first")["send_time"]
        return sent["t"]

    status, body, seconds, delay = wait_for_chats(replicas.waiter, amy, first, wait=5)
    assert status == 200, body
    assert body["latest_activity"] == sent["t"]
    assert [(e["chat"], e["unread"], e["read_cursor"]) for e in body["chats"]] == [(chat, 1, 0)]
    assert seconds < 4.5 and delay < 2, (seconds, delay)


def test_a_user_without_chats_waits_for_the_first_message(replicas: Replicas) -> None:
    first_message_wakes_the_wait(replicas)


# -- on a Redis Cluster --------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster_replicas(
    cluster_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Replicas]:
    stacks = StackFactory(tmp_path_factory.mktemp("chats-cluster"))
    try:
        yield start_replicas(stacks, cluster_url, RPC_TIMEOUT="2")
    finally:
        stacks.stop_all()


def test_lists_on_a_cluster(cluster_replicas: Replicas, cluster_url: str) -> None:
    """On three masters: concurrent lists equal the model, ties page once, waits wake."""
    run_concurrently(list(cluster_replicas), 30, seed=11)
    client = redis.RedisCluster.from_url(cluster_url)
    try:
        user = f"tie-{uuid.uuid4().hex[:8]}"
        order = build_ties(client, user)
    finally:
        client.close()
    for limit in (1, 2):
        assert names(walk(cluster_replicas.waiter, user, limit)) == order
    first_message_wakes_the_wait(cluster_replicas)


class CrashCluster(NamedTuple):
    cluster: LocalCluster
    base: str  # a front end on it


@pytest.fixture(scope="module")
def crash_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CrashCluster]:
    """A cluster of its own, whose masters may be stopped a while without any failing over.

    Its node timeout is raised far above the stops, so no master is ever taken
    for failed; the service's Redis timeouts are short, so a stopped master
    answers 503 soon.
    """
    cluster = LocalCluster(tmp_path_factory.mktemp("crash-cluster"))
    stacks = StackFactory(tmp_path_factory.mktemp("crash-stack"))
    try:
        cluster.start()
        for port in cluster.ports:
            client = redis.Redis(port=port, socket_timeout=2)
            try:
                client.config_set("cluster-node-timeout", 60000)
            finally:
                client.close()
        s = stacks(cluster.url, REDIS_TIMEOUT="0.3", RPC_TIMEOUT="1.5")
        # As in a service that has run a while: its scripts loaded on every master.
        warm = canonical_chat(*member_names(2))
        send(s.base, warm, warm.split(":")[0], "warm")
        assert listing(s.base, warm.split(":")[0])["chats"]
        yield CrashCluster(cluster, s.base)
    finally:
        stacks.stop_all()
        cluster.stop()


def master_of(cluster: LocalCluster) -> Callable[[str], int]:
    """The port of the master that holds a key."""
    client = redis.Redis(port=cluster.ports[0], socket_timeout=2)
    try:
        slots = client.execute_command("CLUSTER", "SLOTS")  # type: ignore[no-untyped-call]
        ranges = [(e[0], e[1], int(e[2][1])) for e in slots]
    finally:
        client.close()

    def port(key: str) -> int:
        slot = key_slot(key.encode())
        return next(p for lo, hi, p in ranges if lo <= slot <= hi)

    return port


def members_apart(cluster: LocalCluster, count: int) -> tuple[int, str, list[str]]:
    """A member whose list is on one master (returned: its port) and `count` peers whose
    lists and chats with the member are all on other masters."""
    port = master_of(cluster)
    tag = uuid.uuid4().hex[:6]
    user = f"u-{tag}"
    victim = port(list_key(user))
    peers: list[str] = []
    for i in range(10_000):
        peer = f"p{i}-{tag}"
        keys = (list_key(peer), chat_key(canonical_chat(user, peer)))
        if all(port(k) != victim for k in keys):
            peers.append(peer)
            if len(peers) == count:
                return victim, user, peers
    raise AssertionError("no such members")


def pull_texts(base: str, chat: str) -> list[tuple[str, int]]:
    status, page, _ = http_call(base, "GET", f"/api/pull?{query({'chat': chat})}")
    assert status == 200, page
    return [(m["text"], m["send_time"]) for m in page["messages"]]


def keyed_send(base: str, chat: str, sender: str, text: str, key: str) -> tuple[int, Any, float]:
    body = orjson.dumps({"chat": chat, "sender": sender, "text": text})
    return http_call(base, "POST", "/api/send", body, {**JSON, "Idempotency-Key": key}, 15)


def test_a_crash_between_the_chat_write_and_the_index_write(crash_cluster: CrashCluster) -> None:
    """The master of a member's list stopped (SIGSTOP) as a send is stored on another master.

    The send fails (5xx) though its message is stored; the member's list
    cannot show it meanwhile; a retry with the same idempotency key stores
    nothing new, answers the original send_time, and lists the chat for both.
    """
    cluster, base = crash_cluster
    victim, user, (peer,) = members_apart(cluster, 1)
    chat = canonical_chat(user, peer)
    node = cluster.nodes[cluster.ports.index(victim)]
    key = f"retry-{uuid.uuid4().hex}"
    node.signal(signal.SIGSTOP)
    try:
        status, reply, seconds = keyed_send(base, chat, peer, "while stopped", key)
        assert status in (503, 504), reply
        assert reply["code"] != 0 and reply["msg"], reply
        assert seconds < 5, seconds
        # Stored all the same: the chat lives on a master that runs.
        ((text, send_time),) = pull_texts(base, chat)
        assert text == "while stopped"
        # The peer's list (on a master that runs) has it; the member's cannot be read.
        entry = entry_of(base, peer, chat)
        assert (entry["last_message"]["send_time"], entry["unread"]) == (send_time, 0)
        status, body, seconds = chats(base, user)
        assert status in (503, 504) and body["code"] != 0, body
        assert seconds < 5, seconds
    finally:
        node.signal(signal.SIGCONT)
    cluster.wait_ok()
    status, reply, _ = keyed_send(base, chat, peer, "while stopped", key)
    assert status == 200, reply
    assert (reply["duplicate"], reply["send_time"]) == (True, send_time)
    assert pull_texts(base, chat) == [("while stopped", send_time)]
    mine = listing(base, user)
    assert [(e["chat"], e["unread"], e["read_cursor"]) for e in mine["chats"]] == [(chat, 1, 0)]
    assert mine["chats"][0]["last_message"]["send_time"] == mine["latest_activity"] == send_time
    assert entry_of(base, peer, chat)["last_message"]["send_time"] == send_time


def test_an_index_write_refused_lists_the_chat_late_until_the_retry(
    crash_cluster: CrashCluster,
) -> None:
    """The master of a member's list refuses writes (out of memory) while sends are stored.

    The exact state a crash between the two writes leaves, read while it
    lasts: a chat that had messages stays listed at its earlier send_time
    (though its newest message and unread count show), a new chat is not
    listed at all. Retries with the same keys repair both.
    """
    cluster, base = crash_cluster
    victim, user, (peer, other, newbie) = members_apart(cluster, 3)
    old, busy, new = (canonical_chat(user, p) for p in (peer, other, newbie))
    first = send(base, old, peer, "before")["send_time"]
    busy_time = send(base, busy, other, "busy")["send_time"]
    assert names(listing(base, user)["chats"]) == [busy, old]
    client = redis.Redis(port=victim, socket_timeout=2)
    keys = {old: f"k-{uuid.uuid4().hex}", new: f"k-{uuid.uuid4().hex}"}
    statuses = []
    try:
        client.config_set("maxmemory", 1)
        failed = {}
        for chat, sender in ((old, peer), (new, newbie)):
            status, reply, seconds = keyed_send(base, chat, sender, "refused", keys[chat])
            statuses.append((status, reply))  # checked last: see the end
            assert status >= 500 and reply["code"] != 0, reply
            assert seconds < 5
            ((text, failed[chat]),) = pull_texts(base, chat)[-1:]
            assert text == "refused"
        # The list still has old at its earlier send_time: a one-chat page shows busy...
        assert names(listing(base, user, limit=1)["chats"]) == [busy]
        # ... while a page holding both shows old's newest message, and so puts old first.
        mine = listing(base, user)
        assert names(mine["chats"]) == [old, busy], mine
        entry = mine["chats"][0]
        assert entry["last_message"]["send_time"] == failed[old] > busy_time > first
        assert (entry["unread"], entry["read_cursor"]) == (2, 0)
        assert entry_of(base, peer, old)["last_message"]["send_time"] == failed[old]
        assert entry_of(base, newbie, new)["unread"] == 0
    finally:
        client.config_set("maxmemory", 0)
        client.close()
    for chat, sender in ((old, peer), (new, newbie)):
        status, reply, _ = keyed_send(base, chat, sender, "refused", keys[chat])
        assert status == 200, reply
        assert (reply["duplicate"], reply["send_time"]) == (True, failed[chat])
    mine = listing(base, user)
    assert names(mine["chats"]) == [new, old, busy]
    assert [e["last_message"]["send_time"] for e in mine["chats"]][:2] == [failed[new], failed[old]]
    assert mine["latest_activity"] == failed[new]
    assert [t for _, t in pull_texts(base, old)] == [first, failed[old]]
    # A store that refuses writes is unavailable for now: 503, as the contract says.
    assert [status for status, _ in statuses] == [503, 503], statuses


def test_scripts_load_on_their_own_master_while_another_is_stopped(
    crash_cluster: CrashCluster,
) -> None:
    """After a SCRIPT FLUSH, a stopped master does not stall sends to the others.

    A script missing on a node is loaded on that node only, so a chat whose
    master (and whose members' list masters) answer is served while another
    master is stopped.
    """
    cluster, base = crash_cluster
    port_of = master_of(cluster)
    stopped = cluster.ports[0]
    chat = ""
    for _ in range(1000):  # a chat and both members' lists away from the stopped master
        candidate = canonical_chat(*member_names(2))
        keys = [f"im:{{{candidate}}}", *(f"chats:{{{m}}}" for m in candidate.split(":"))]
        if stopped not in {port_of(k) for k in keys}:
            chat = candidate
            break
    assert chat
    for port in cluster.ports:
        client = redis.Redis(port=port, socket_timeout=2)
        try:
            client.script_flush()
        finally:
            client.close()
    node = cluster.nodes[cluster.ports.index(stopped)]
    node.signal(signal.SIGSTOP)
    try:
        reply = send(base, chat, chat.split(":")[0], "while a master is stopped")
        assert reply["send_time"] > 0
    finally:
        node.signal(signal.SIGCONT)
    cluster.wait_ok()
