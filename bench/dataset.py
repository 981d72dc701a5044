"""The data the benchmark reads: chat names, messages, and preloading them into Redis.

Messages are written straight into Redis (not through the API) so that a
million of them load in seconds, in exactly the shape ``rpc_srv/store.py``
stores: key ``im:{a:b}``, score = send_time in µs, member = the orjson array
``[send_time, sender, text]``. Chat names must match ``bench/wrk/common.lua``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import dataclass

import orjson
import redis

from rpc_srv.store import chat_key, encode_member_tail

WORKLOAD_CHATS = 1000  # formed from 2000 users, as in bench/wrk/common.lua
ALPHABET = "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 .,!?-"
TEXT_MIN, TEXT_MAX = 40, 80
PAIRS_PER_ZADD = 100  # score-member pairs in one ZADD
COMMANDS_PER_PIPELINE = 2000  # ZADDs sent in one round trip
SPACING_US = 1000  # preloaded messages are 1 ms apart, ending before "now"


def member_name(n: int) -> str:
    return f"user{n:04d}"


def workload_chat(i: int) -> str:
    """Chat `i` of the workloads, canonical spelling (the members sort as numbered)."""
    return f"{member_name(2 * i)}:{member_name(2 * i + 1)}"


def scale_chat(count: int) -> str:
    """The chat that holds `count` messages for the data-scale runs."""
    return f"scale{count}a:scale{count}b"


def encode_member(send_time: int, sender: str, text: str) -> bytes:
    """The stored member; identical to what send.lua builds from the store's tail."""
    return orjson.dumps((send_time, sender, text))


class TextSource:
    """Random texts of 40-80 characters, as slices of one random pool (cheap per text)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.pool = "".join(self.rng.choices(ALPHABET, k=1 << 16))

    def text(self) -> str:
        # random() rather than randint(): a third of the cost of a 10^6 preload.
        draw = self.rng.random
        n = TEXT_MIN + int(draw() * (TEXT_MAX - TEXT_MIN + 1))
        start = int(draw() * (len(self.pool) - n))
        return self.pool[start : start + n]


@dataclass(frozen=True)
class LoadedChat:
    chat: str
    count: int
    first_send_time: int
    last_send_time: int
    member_bytes: int  # the members' encoded sizes added up: the payload itself

    def send_time(self, index: int) -> int:
        """The send_time of the message at `index` (0 = oldest)."""
        return self.first_send_time + index * SPACING_US


def _messages(chat: str, count: int, first: int, texts: TextSource) -> Iterator[tuple[int, bytes]]:
    a, b = chat.split(":")
    for k in range(count):
        send_time = first + k * SPACING_US
        yield send_time, encode_member(send_time, a if k % 2 == 0 else b, texts.text())


def _flush(pipe: redis.client.Pipeline) -> None:
    for reply in pipe.execute(raise_on_error=True):
        if not isinstance(reply, int):
            raise RuntimeError(f"unexpected ZADD reply {reply!r}")


def preload(client: redis.Redis, chats: list[tuple[str, int]], seed: int) -> list[LoadedChat]:
    """Replace each chat's messages by `count` fresh ones, in big pipelines.

    send_times are strictly increasing per chat and end before now, so later
    sends through the API (send.lua: max(clock, highest + 1)) append after them.
    """
    check_member_encoding()
    texts = TextSource(seed)
    now_us = time.time_ns() // 1000
    pipe = client.pipeline(transaction=False)
    queued = 0
    loaded: list[LoadedChat] = []
    for chat, count in chats:
        key = chat_key(chat)
        pipe.delete(key)
        queued += 1
        first = now_us - (count + 1) * SPACING_US
        batch: dict[bytes, int] = {}  # member -> score, as redis-py's zadd takes them
        member_bytes = 0
        for score, member in _messages(chat, count, first, texts):
            batch[member] = score
            member_bytes += len(member)
            if len(batch) == PAIRS_PER_ZADD:
                pipe.zadd(key, batch)
                batch = {}
                queued += 1
                if queued >= COMMANDS_PER_PIPELINE:
                    _flush(pipe)
                    queued = 0
        if batch:
            pipe.zadd(key, batch)
            queued += 1
        last = first + (count - 1) * SPACING_US
        loaded.append(LoadedChat(chat, count, first, last, member_bytes))
    if queued:
        _flush(pipe)
    for item in loaded:
        stored = client.zcard(chat_key(item.chat))
        if stored != item.count:
            raise RuntimeError(f"{item.chat}: {stored} messages stored, {item.count} meant")
    return loaded


def check_member_encoding() -> None:
    """Fail early if the store's member format ever stops matching ours."""
    send_time, sender, text = 1700000000000000, "alice", 'h\u00e9 "x"'
    from_store = b"[%d," % send_time + encode_member_tail(sender, text)
    if from_store != encode_member(send_time, sender, text):
        raise RuntimeError("bench/dataset.py encodes members differently from rpc_srv/store.py")


def wait_for_aof_rewrite(client: redis.Redis, timeout: float = 300.0) -> None:
    """Rewrite the AOF now and wait, so no rewrite (a fork) runs during a measurement."""
    info = client.info("persistence")
    if not info.get("aof_enabled"):
        return
    if not info.get("aof_rewrite_in_progress"):
        client.bgrewriteaof()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.2)
        info = client.info("persistence")
        if not info.get("aof_rewrite_in_progress") and not info.get("aof_rewrite_scheduled"):
            return
    raise RuntimeError("the AOF rewrite did not finish in time")


@dataclass(frozen=True)
class MemoryFigure:
    """What one chat of `messages` messages costs Redis, two ways."""

    messages: int
    encoding: str  # listpack for small sorted sets, skiplist beyond zset-max-listpack-entries
    memory_usage: int  # MEMORY USAGE key SAMPLES 0: the key's own allocation, exact
    used_memory_delta: int  # INFO used_memory after minus before loading it
    member_bytes: int  # the payload: encoded members added up

    def as_dict(self) -> dict[str, int | float | str]:
        n = max(self.messages, 1)
        return {
            "messages": self.messages,
            "encoding": self.encoding,
            "memory_usage": self.memory_usage,
            "used_memory_delta": self.used_memory_delta,
            "member_bytes": self.member_bytes,
            "bytes_per_message": self.memory_usage / n,
            "used_memory_delta_per_message": self.used_memory_delta / n,
            "member_bytes_per_message": self.member_bytes / n,
        }


def preload_measured(client: redis.Redis, count: int, seed: int) -> tuple[LoadedChat, MemoryFigure]:
    """Load one data-scale chat and measure the memory it takes."""
    chat = scale_chat(count)
    client.delete(chat_key(chat))
    before = int(client.info("memory")["used_memory"])
    (loaded,) = preload(client, [(chat, count)], seed)
    after = int(client.info("memory")["used_memory"])
    usage = client.memory_usage(chat_key(chat), samples=0) or 0
    encoding = client.object("encoding", chat_key(chat))
    if isinstance(encoding, bytes):
        encoding = encoding.decode()
    figure = MemoryFigure(count, str(encoding), int(usage), after - before, loaded.member_bytes)
    return loaded, figure


def preload_via_api(url: str, chats: list[str], count: int, seed: int, threads: int = 8) -> int:
    """Send `count` messages to each chat through POST /api/send (no Redis at hand).

    Slow next to pipelines, so only for a stack measured at ``--url`` whose
    Redis was not given; returns how many sends failed.
    """
    from concurrent.futures import ThreadPoolExecutor
    from http.client import HTTPConnection
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    texts = TextSource(seed)
    bodies = [
        orjson.dumps({"chat": chat, "sender": chat.split(":")[k % 2], "text": texts.text()})
        for chat in chats
        for k in range(count)
    ]

    def send_all(share: list[bytes]) -> int:
        failed = 0
        conn = HTTPConnection(parts.hostname or "127.0.0.1", parts.port or 80, timeout=10)
        try:
            for body in share:
                conn.request("POST", "/api/send", body, {"Content-Type": "application/json"})
                reply = conn.getresponse()
                reply.read()
                failed += reply.status != 200
        finally:
            conn.close()
        return failed

    with ThreadPoolExecutor(threads) as pool:
        return sum(pool.map(send_all, [bodies[k::threads] for k in range(threads)]))
