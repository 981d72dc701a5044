"""Conversation lists and read cursors at the store level (lua/chats.lua, conversation.lua).

The RPC service's own answer (`rpc_srv.calls.chats_reply`) is built on the store
here, so the lists are checked as the public contract states them, without the
HTTP tiers. `Model` is the Python model of the contract, shared with test_chats.py.
"""

from __future__ import annotations

import asyncio
import bisect
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from redis.asyncio import RedisCluster

from contract import chats_cursor
from contract.chat import canonical_chat
from contract.chats_cursor import ChatsCursor
from contract.requests import ChatsRequest
from rpc_srv.calls import chats_reply
from rpc_srv.store import MessageStore, chat_key, list_key, read_key

HUGE = 2**63 - 1  # the largest send_time a read may give


# -- the model ---------------------------------------------------------------------


@dataclass
class ModelChat:
    name: str  # canonical
    messages: list[dict[str, Any]] = field(default_factory=list)  # wire form, by send_time
    cursors: dict[str, int] = field(default_factory=dict)  # member -> read cursor


class Model:
    """What the contract says a member's list holds, from the sends and reads it was told."""

    def __init__(self) -> None:
        self.chats: dict[str, ModelChat] = {}

    def chat(self, name: str) -> ModelChat:
        return self.chats.setdefault(name, ModelChat(name))

    def sent(self, chat: str, sender: str, text: str, send_time: int) -> None:
        """A send the store acknowledged with `send_time` (in any order of arrival)."""
        c = self.chat(chat)
        times = [m["send_time"] for m in c.messages]
        assert send_time not in times, f"send_time {send_time} given twice in {chat}"
        message = {"chat": chat, "text": text, "sender": sender, "send_time": send_time}
        c.messages.insert(bisect.bisect(times, send_time), message)
        # A member's own send is read by them; a cursor never moves back.
        c.cursors[sender] = max(c.cursors.get(sender, 0), send_time)

    def read(self, chat: str, user: str, upto: int) -> dict[str, int]:
        """A read receipt: never back, never past the newest message."""
        c = self.chat(chat)
        if c.messages:
            newest = c.messages[-1]["send_time"]
            c.cursors[user] = max(c.cursors.get(user, 0), min(upto, newest))
        return self.state(chat, user)

    def saw_cursor(self, chat: str, user: str, cursor: int) -> None:
        """A read cursor the store answered (concurrent runs: the final one is the highest)."""
        c = self.chat(chat)
        c.cursors[user] = max(c.cursors.get(user, 0), cursor)

    def state(self, chat: str, user: str) -> dict[str, int]:
        c = self.chat(chat)
        cursor = c.cursors.get(user, 0)
        unread = sum(1 for m in c.messages if m["send_time"] > cursor)
        return {"read_cursor": cursor, "unread": unread}

    def entries(self, user: str) -> list[dict[str, Any]]:
        """`user`'s list: (newest send_time, chat bytes) descending."""
        found = []
        for c in self.chats.values():
            first, second = c.name.split(":")
            if user not in (first, second) or not c.messages:
                continue
            found.append(
                {
                    "chat": c.name,
                    "peer": second if first == user else first,
                    "last_message": c.messages[-1],
                    **self.state(c.name, user),
                }
            )
        return sorted(found, key=order_key, reverse=True)

    def latest(self, user: str) -> int:
        return max((e["last_message"]["send_time"] for e in self.entries(user)), default=0)


def order_key(entry: dict[str, Any]) -> tuple[int, bytes]:
    return entry["last_message"]["send_time"], entry["chat"].encode()


def read_time(messages: list[dict[str, Any]], pick: int) -> int:
    """A send_time for a read: 0, huge, or one of the chat's messages' (-1, at, +1)."""
    if pick == 0:
        return 0
    if pick == 1:
        return HUGE
    if not messages:
        return pick
    at: int = messages[pick % len(messages)]["send_time"]
    return at + pick % 3 - 1


def member_names(count: int) -> list[str]:
    """Fresh members whose spellings sort differently by case and code point."""
    tag = uuid.uuid4().hex[:10]
    return [f"{p}-{tag}" for p in ("Zoë", "amy", "bob", "émile", "😀x")[:count]]


def all_chats(users: list[str]) -> list[str]:
    """Every pair of the users, and the first user's chat with themself."""
    pairs = [canonical_chat(a, b) for i, a in enumerate(users) for b in users[i + 1 :]]
    return [*pairs, canonical_chat(users[0], users[0])]


# -- helpers -----------------------------------------------------------------------


async def listing(
    store: MessageStore, user: str, limit: int = 100, after: ChatsCursor | None = None
) -> dict[str, Any]:
    """The RPC service's Chats answer, decoded as a client gets it."""
    reply = await chats_reply(store, ChatsRequest(user, limit, after))
    decoded: dict[str, Any] = orjson.loads(orjson.dumps(reply))
    return decoded


async def walk(store: MessageStore, user: str, limit: int) -> list[dict[str, Any]]:
    """Every page of `user`'s list with next_cursor; each page checked on its own."""
    seen: list[dict[str, Any]] = []
    after = None
    for _ in range(1000):
        page = await listing(store, user, limit, after)
        assert len(page["chats"]) <= limit
        seen += page["chats"]
        if not page["has_more"]:
            assert page["next_cursor"] == ""
            return seen
        assert len(page["chats"]) == limit, page
        after = chats_cursor.decode(page["next_cursor"], user)
    raise AssertionError("the walk did not end")


async def raw_walk(store: MessageStore, user: str, limit: int) -> list[tuple[str, int]]:
    """Every page of the store's list itself, each starting after the previous page's last."""
    seen: list[tuple[str, int]] = []
    after: tuple[int, str] | None = None
    for _ in range(1000):
        page = await store.chats(user, limit, after)
        assert len(page.entries) <= limit
        seen += page.entries
        if not page.has_more:
            return seen
        assert len(page.entries) == limit
        chat, send_time = page.entries[-1]
        after = (send_time, chat)
    raise AssertionError("the walk did not end")


def names(entries: list[dict[str, Any]]) -> list[str]:
    return [e["chat"] for e in entries]


async def check_lists(
    store: MessageStore, model: Model, users: list[str], limits: list[int]
) -> None:
    """Each user's list (whole, and walked with every limit) is the model's."""
    for user in users:
        expected = model.entries(user)
        whole = await listing(store, user)
        assert whole["chats"] == expected, user
        assert (whole["has_more"], whole["next_cursor"]) == (False, "")
        assert whole["latest_activity"] == model.latest(user)
        for limit in limits:
            assert await walk(store, user, limit) == expected, (user, limit)


# -- basics ------------------------------------------------------------------------


async def test_first_message_lists_the_chat_for_both_members(store: MessageStore) -> None:
    """From its first message a chat is in both lists, with the peer and the unread count."""
    alice, bob = member_names(3)[1:3]
    chat = canonical_chat(alice, bob)
    assert (await listing(store, alice))["chats"] == []
    sent = await store.send(chat, bob, "hello")
    message = {"chat": chat, "text": "hello", "sender": bob, "send_time": sent.send_time}
    a, b = await listing(store, alice), await listing(store, bob)
    assert a["chats"] == [
        {"chat": chat, "peer": bob, "last_message": message, "unread": 1, "read_cursor": 0}
    ]
    assert b["chats"] == [
        {
            "chat": chat,
            "peer": alice,
            "last_message": message,
            "unread": 0,
            "read_cursor": sent.send_time,
        }
    ]
    assert a["latest_activity"] == b["latest_activity"] == sent.send_time


async def test_unread_counts_the_messages_after_the_read_cursor(store: MessageStore) -> None:
    alice, bob = member_names(3)[1:3]
    chat = canonical_chat(alice, bob)
    times = [(await store.send(chat, bob, f"m{i}")).send_time for i in range(6)]
    assert (await store.read_state(chat, alice)).unread == 6
    state = await store.read_state(chat, alice, times[2])
    assert (state.read_cursor, state.unread) == (times[2], 3)
    # Between two messages: the cursor stays where it was put, the count follows it.
    state = await store.read_state(chat, alice, times[3] + 1)
    assert (state.read_cursor, state.unread) == (times[3] + 1, 2)
    # Never back.
    state = await store.read_state(chat, alice, times[0])
    assert (state.read_cursor, state.unread) == (times[3] + 1, 2)
    state = await store.read_state(chat, alice, 0)
    assert (state.read_cursor, state.unread) == (times[3] + 1, 2)
    # The other member's cursor is their own: bob sent every one.
    state = await store.read_state(chat, bob)
    assert (state.read_cursor, state.unread) == (times[-1], 0)


async def test_read_past_the_newest_stops_at_it(store: MessageStore) -> None:
    """A read beyond the newest message clamps to it: a later message is still unread."""
    alice, bob = member_names(3)[1:3]
    chat = canonical_chat(alice, bob)
    first = (await store.send(chat, bob, "one")).send_time
    state = await store.read_state(chat, alice, HUGE)
    assert (state.read_cursor, state.unread) == (first, 0)
    later = (await store.send(chat, bob, "two")).send_time
    state = await store.read_state(chat, alice)
    assert (state.read_cursor, state.unread) == (first, 1)
    entry = (await listing(store, alice))["chats"][0]
    assert (entry["unread"], entry["read_cursor"], entry["last_message"]["send_time"]) == (
        1,
        first,
        later,
    )


async def test_read_of_a_chat_without_messages(store: MessageStore) -> None:
    """Nothing to read: cursor 0, unread 0, nothing written, and no list shows the chat."""
    alice, bob = member_names(3)[1:3]
    chat = canonical_chat(alice, bob)
    state = await store.read_state(chat, alice, 12345)
    assert (state.read_cursor, state.unread, state.last_message_json) == (0, 0, None)
    assert await store.redis.exists(read_key(chat), chat_key(chat)) == 0
    assert (await listing(store, alice))["chats"] == []
    # The first message then counts as unread.
    await store.send(chat, bob, "now")
    state = await store.read_state(chat, alice)
    assert (state.read_cursor, state.unread) == (0, 1)


async def test_chat_with_oneself(store: MessageStore) -> None:
    """A chat "u:u" is listed once, its peer the member, its own sends read."""
    user = member_names(1)[0]
    chat = canonical_chat(user, user)
    sent = await store.send(chat, user, "note to self")
    entries = (await listing(store, user))["chats"]
    assert [(e["chat"], e["peer"], e["unread"], e["read_cursor"]) for e in entries] == [
        (chat, user, 0, sent.send_time)
    ]


async def test_default_and_largest_limits(store: MessageStore) -> None:
    """Without a limit a page holds 20 chats; 100 holds them all."""
    user = member_names(1)[0]
    tag = uuid.uuid4().hex[:6]
    chats = [canonical_chat(user, f"p{i:02}-{tag}") for i in range(23)]
    model = Model()
    for chat in chats:
        model.sent(chat, user, "x", (await store.send(chat, user, "x")).send_time)
    reply = await chats_reply(store, ChatsRequest(user, 20, None))
    assert len(reply["chats"]) == 20 and reply["has_more"]
    whole = await listing(store, user, 100)
    assert whole["chats"] == model.entries(user) and not whole["has_more"]


# -- ties --------------------------------------------------------------------------


async def put_chat(store: MessageStore, chat: str, send_time: int, text: str = "x") -> None:
    """A chat whose newest message has `send_time`, written as send.lua writes it."""
    await store.redis.xadd(chat_key(chat), {"0": orjson.dumps(text)}, id=f"{send_time}-1")
    for member in set(chat.split(":")):
        await store.redis.zadd(list_key(member), {chat: send_time})


async def clock(store: MessageStore) -> int:
    seconds, micros = await store.redis.time()
    return int(seconds) * 1_000_000 + int(micros)


def tie_peers(user: str) -> list[str]:
    """Peers whose chats with `user` compare byte by byte in every way that matters."""
    tag = uuid.uuid4().hex[:6]
    # Shared prefixes (one a prefix of another), case, two- and four-byte UTF-8.
    return [f"{p}{tag}" for p in ("~b", "~ba", "~bab", "~B", "~é", "~z", "~😀", "~ÿ", "~a", "~aa")]


async def build_ties(store: MessageStore, user: str) -> list[str]:
    """Chats of `user` at three send_times, most at one; returned in list order."""
    base = await clock(store) - 10_000_000  # in the past: a later send moves above it
    peers = tie_peers(user)
    levels = [base + 1] + [base] * 7 + [base - 1] * 2
    built = []
    for peer, at in zip(peers, levels, strict=True):
        chat = canonical_chat(user, peer)
        await put_chat(store, chat, at, f"at {at}")
        built.append((at, chat.encode(), chat))
    return [chat for *_, chat in sorted(built, reverse=True)]


@pytest.mark.parametrize("limit", [1, 2, 3])
async def test_ties_page_every_chat_once(store: MessageStore, limit: int) -> None:
    """Chats whose newest messages share a send_time: every page walk returns each once."""
    user = f"tie-{uuid.uuid4().hex[:8]}"
    order = await build_ties(store, user)
    assert [c for c, _ in await raw_walk(store, user, limit)] == order
    walked = await walk(store, user, limit)
    assert names(walked) == order
    assert (await listing(store, user))["chats"] == walked


async def test_a_cursor_inside_a_tie_starts_after_it(store: MessageStore) -> None:
    """From each entry of the list, the next page starts with the entry after it."""
    user = f"tie-{uuid.uuid4().hex[:8]}"
    order = await build_ties(store, user)
    listed = await raw_walk(store, user, 100)
    for i, (chat, send_time) in enumerate(listed):
        page = await store.chats(user, 3, (send_time, chat))
        assert [c for c, _ in page.entries] == order[i + 1 : i + 4]
        assert page.has_more == (i + 4 < len(order))


async def test_walk_while_activity_changes(store: MessageStore) -> None:
    """A chat that gets a message mid-walk moves to the top; the others come exactly once."""
    user = f"walk-{uuid.uuid4().hex[:8]}"
    order = await build_ties(store, user)
    first_page = await listing(store, user, 2)
    assert names(first_page["chats"]) == order[:2]
    later, earlier = order[6], order[1]  # one not walked yet (inside the tie), one walked
    newcomer = canonical_chat(user, f"new-{uuid.uuid4().hex[:6]}")
    for chat in (later, earlier, newcomer):
        await store.send(chat, user, f"news in {chat}")
    seen = names(first_page["chats"])
    after = chats_cursor.decode(first_page["next_cursor"], user)
    while True:
        page = await listing(store, user, 2, after)
        seen += names(page["chats"])
        if not page["has_more"]:
            break
        after = chats_cursor.decode(page["next_cursor"], user)
    unchanged = [c for c in order if c not in (later, earlier)]
    assert len(seen) == len(set(seen)), seen
    assert [c for c in seen if c in unchanged] == unchanged
    assert later not in seen and newcomer not in seen
    # A new walk shows them on top, most recent first.
    again = names(await walk(store, user, 2))
    assert again == [newcomer, earlier, later, *unchanged]


# -- the model, at random ------------------------------------------------------------

STEP = st.tuples(
    st.sampled_from(("send", "send", "read")),
    st.integers(0, 9),  # which chat
    st.booleans(),  # which of its members
    st.integers(0, 40),  # the text, or which send_time a read gives
)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    count=st.integers(3, 4),
    steps=st.lists(STEP, min_size=10, max_size=30),
    limits=st.lists(st.integers(1, 5), min_size=1, max_size=3),
)
def test_lists_follow_the_model(
    redis_url: str, count: int, steps: list[tuple[str, int, bool, int]], limits: list[int]
) -> None:
    """Random sends and reads among 3-4 members (store level, for speed).

    After each step every member's list, whole and walked with each limit,
    equals the model: order, last message, unread, read cursor, latest_activity.
    """

    async def scenario() -> None:
        store = MessageStore.from_url(redis_url, idempotency_ttl=60)
        users = member_names(count)
        chats = all_chats(users)
        model = Model()
        try:
            for kind, which, side, pick in steps:
                chat = chats[which % len(chats)]
                member = chat.split(":")[side]
                if kind == "send":
                    text = f"{pick} ünï {which}"
                    sent = await store.send(chat, member, text)
                    assert not sent.duplicate
                    model.sent(chat, member, text, sent.send_time)
                else:
                    upto = read_time(model.chat(chat).messages, pick)
                    state = await store.read_state(chat, member, upto)
                    expected = model.read(chat, member, upto)
                    assert (state.read_cursor, state.unread) == tuple(expected.values())
                await check_lists(store, model, users, limits)
        finally:
            await store.close()

    asyncio.run(scenario())


# -- on a Redis Cluster --------------------------------------------------------------


async def test_cluster_lists_follow_the_sends(cstore: MessageStore) -> None:
    """Lists and chats in other slots (other masters): each send is listed when answered."""
    assert isinstance(cstore.redis, RedisCluster)
    users = member_names(5)
    chats = all_chats(users)
    keys = [*map(list_key, users), *map(chat_key, chats)]
    nodes = [cstore.redis.get_node_from_key(k) for k in keys]
    assert len({n.name for n in nodes if n is not None}) > 1  # spread over masters
    model = Model()
    for i in range(3):
        for j, chat in enumerate(chats):
            member = chat.split(":")[(i + j) % 2]
            sent = await cstore.send(chat, member, f"{i}/{j}")
            model.sent(chat, member, f"{i}/{j}", sent.send_time)
            if j % 3 == 0:
                other = chat.split(":")[(i + j + 1) % 2]
                upto = sent.send_time - 1
                state = await cstore.read_state(chat, other, upto)
                assert (state.read_cursor, state.unread) == tuple(
                    model.read(chat, other, upto).values()
                )
    await check_lists(cstore, model, users, [1, 2, 5])


async def test_cluster_ties_page_every_chat_once(cstore: MessageStore) -> None:
    user = f"tie-{uuid.uuid4().hex[:8]}"
    order = await build_ties(cstore, user)
    for limit in (1, 2):
        assert names(await walk(cstore, user, limit)) == order
