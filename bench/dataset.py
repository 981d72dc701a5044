"""The data the benchmark reads: chat names, messages, and preloading them into Redis.

Messages are written straight into Redis (not through the API) so that a
million of them load in seconds, in exactly the shape the store keeps them:

- ``stream`` (today's, ``rpc_srv/store.py``): key ``im:{a:b}``, one entry per
  message, id ``<send_time>-<number>`` (number 1, 2, ...), one field: the
  sender's place in the chat (0 or 1) -> the text as a JSON string;
- ``sorted-set`` (the earlier layout, ``bench/legacy``): the same key, score =
  send_time, member = the orjson array ``[send_time, sender, text]``.

send_times are µs, strictly increasing, 1 ms apart, ending before now, so
later sends through the API append after them. Chat names must match
``bench/wrk/common.lua``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from dataclasses import dataclass

import orjson
import redis

from bench.legacy.store import encode_member
from rpc_srv.store import chat_key, sender_place

STREAM, SORTED_SET = "stream", "sorted-set"
LAYOUTS = (STREAM, SORTED_SET)
WORKLOAD_CHATS = 1000  # formed from 2000 users, as in bench/wrk/common.lua
ALPHABET = "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 .,!?-"
LONG_TEXTS = (40, 80)  # characters: what the workloads send
SHORT_TEXTS = (1, 10)  # "ok", "see you": for the memory figures only
PAIRS_PER_ZADD = 100  # score-member pairs in one ZADD
COMMANDS_PER_PIPELINE = 2000  # commands sent in one round trip
SPACING_US = 1000  # preloaded messages are 1 ms apart, ending before "now"


def member_name(n: int) -> str:
    return f"user{n:04d}"


def workload_chat(i: int) -> str:
    """Chat `i` of the workloads, canonical spelling (the members sort as numbered)."""
    return f"{member_name(2 * i)}:{member_name(2 * i + 1)}"


def scale_chat(count: int, texts: tuple[int, int] = LONG_TEXTS) -> str:
    """The chat that holds `count` messages for the data-scale runs (and memory figures)."""
    if texts == LONG_TEXTS:
        return f"scale{count}a:scale{count}b"
    return f"scale{count}a{texts[0]}-{texts[1]}:scale{count}b{texts[0]}-{texts[1]}"


class TextSource:
    """Random texts of `lo`-`hi` characters, as slices of one random pool (cheap per text)."""

    def __init__(self, seed: int, lo: int = LONG_TEXTS[0], hi: int = LONG_TEXTS[1]) -> None:
        self.rng = random.Random(seed)
        self.pool = "".join(self.rng.choices(ALPHABET, k=1 << 16))
        self.lo, self.hi = lo, hi

    def text(self) -> str:
        # random() rather than randint(): a third of the cost of a 10^6 preload.
        draw = self.rng.random
        n = self.lo + int(draw() * (self.hi - self.lo + 1))
        start = int(draw() * (len(self.pool) - n))
        return self.pool[start : start + n]


@dataclass(frozen=True)
class LoadedChat:
    chat: str
    count: int
    first_send_time: int
    last_send_time: int
    payload_bytes: int  # what the layout must store per message, added up (see _messages)

    def send_time(self, index: int) -> int:
        """The send_time of the message at `index` (0 = oldest)."""
        return self.first_send_time + index * SPACING_US


def _messages(
    chat: str, count: int, first: int, texts: TextSource
) -> Iterator[tuple[int, str, str]]:
    a, b = chat.split(":")
    for k in range(count):
        yield first + k * SPACING_US, a if k % 2 == 0 else b, texts.text()


def _flush(pipe: redis.client.Pipeline) -> None:
    for reply in pipe.execute(raise_on_error=True):
        if not isinstance(reply, (int, bytes)):
            raise RuntimeError(f"unexpected reply {reply!r} while preloading")


class _Loader:
    """Queues the commands of a preload and sends them COMMANDS_PER_PIPELINE at a time."""

    def __init__(self, client: redis.Redis) -> None:
        self.pipe = client.pipeline(transaction=False)
        self.queued = 0

    def queued_one(self) -> None:
        self.queued += 1
        if self.queued >= COMMANDS_PER_PIPELINE:
            self.flush()

    def flush(self) -> None:
        if self.queued:
            _flush(self.pipe)
            self.queued = 0


def _load_stream(loader: _Loader, chat: str, messages: Iterator[tuple[int, str, str]]) -> int:
    """XADD each message as send.lua would; returns the payload (the fields' bytes)."""
    payload = 0
    key = chat_key(chat)
    for number, (send_time, sender, text) in enumerate(messages, start=1):
        place, value = sender_place(chat, sender), orjson.dumps(text)
        loader.pipe.xadd(key, {place: value}, id=f"{send_time}-{number}")
        payload += len(place) + len(value)
        loader.queued_one()
    return payload


def _load_sorted_set(loader: _Loader, chat: str, messages: Iterator[tuple[int, str, str]]) -> int:
    """ZADD the members as the earlier send.lua built them; returns the members' bytes."""
    payload = 0
    key = chat_key(chat)
    batch: dict[bytes, int] = {}  # member -> score, as redis-py's zadd takes them
    for send_time, sender, text in messages:
        member = encode_member(send_time, sender, text)
        batch[member] = send_time
        payload += len(member)
        if len(batch) == PAIRS_PER_ZADD:
            loader.pipe.zadd(key, batch)
            batch = {}
            loader.queued_one()
    if batch:
        loader.pipe.zadd(key, batch)
        loader.queued_one()
    return payload


def preload(
    client: redis.Redis,
    chats: list[tuple[str, int]],
    seed: int,
    layout: str = STREAM,
    texts: tuple[int, int] = LONG_TEXTS,
) -> list[LoadedChat]:
    """Replace each chat's messages by `count` fresh ones in `layout`, in big pipelines."""
    source = TextSource(seed, *texts)
    now_us = time.time_ns() // 1000
    loader = _Loader(client)
    load = _load_stream if layout == STREAM else _load_sorted_set
    loaded: list[LoadedChat] = []
    for chat, count in chats:
        key = chat_key(chat)
        loader.pipe.delete(key)
        loader.queued_one()
        first = now_us - (count + 1) * SPACING_US
        payload = load(loader, chat, _messages(chat, count, first, source))
        last = first + (count - 1) * SPACING_US
        loaded.append(LoadedChat(chat, count, first, last, payload))
    loader.flush()
    length = client.xlen if layout == STREAM else client.zcard
    for item in loaded:
        stored = length(chat_key(item.chat))
        if stored != item.count:
            raise RuntimeError(f"{item.chat}: {stored} messages stored, {item.count} meant")
    return loaded


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

    layout: str  # stream or sorted-set
    texts: str  # the text lengths, "40-80" or "1-10" characters
    messages: int
    encoding: str  # OBJECT ENCODING: stream; listpack or skiplist for a sorted set
    memory_usage: int  # MEMORY USAGE key SAMPLES 0: the key's own allocation, exact
    used_memory_delta: int  # INFO used_memory after minus before loading it
    payload_bytes: int  # the entries' field and value (stream) or the members (sorted set)

    def as_dict(self) -> dict[str, int | float | str]:
        n = max(self.messages, 1)
        return {
            "layout": self.layout,
            "texts": self.texts,
            "messages": self.messages,
            "encoding": self.encoding,
            "memory_usage": self.memory_usage,
            "used_memory_delta": self.used_memory_delta,
            "payload_bytes": self.payload_bytes,
            "bytes_per_message": self.memory_usage / n,
            "used_memory_delta_per_message": self.used_memory_delta / n,
            "payload_bytes_per_message": self.payload_bytes / n,
        }


def preload_measured(
    client: redis.Redis,
    count: int,
    seed: int,
    layout: str = STREAM,
    texts: tuple[int, int] = LONG_TEXTS,
    keep: bool = True,
) -> tuple[LoadedChat, MemoryFigure]:
    """Load one data-scale chat and measure the memory it takes (then drop it unless `keep`)."""
    chat = scale_chat(count, texts)
    key = chat_key(chat)
    client.delete(key)
    before = int(client.info("memory")["used_memory"])
    (loaded,) = preload(client, [(chat, count)], seed, layout, texts)
    after = int(client.info("memory")["used_memory"])
    usage = client.memory_usage(key, samples=0) or 0
    encoding = client.object("encoding", key)
    if isinstance(encoding, bytes):
        encoding = encoding.decode()
    figure = MemoryFigure(
        layout,
        f"{texts[0]}-{texts[1]}",
        count,
        str(encoding),
        int(usage),
        after - before,
        loaded.payload_bytes,
    )
    if not keep:
        client.unlink(key)
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
