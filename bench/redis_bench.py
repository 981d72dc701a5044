"""The store's ceiling: redis-benchmark running the store's own Redis calls.

The send script is loaded with SCRIPT LOAD and called by EVALSHA, a pull is the
XRANGE (XREVRANGE) that ``rpc_srv/store.py`` sends, on keys of the store's
shape (``im:{rbench:<12 digits>}``, 1000 chats via ``-r``) with the arguments
the store passes, so this is what Redis alone can do per send and per pull,
with no Python in the way. The same for the earlier sorted-set layout's
scripts (``bench/legacy``), on a Redis of their own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

import orjson
import redis

from bench.dataset import STREAM
from bench.legacy import script as legacy_script
from bench.legacy.store import encode_member_tail
from bench.loadgen import GRACE_S, run_tool
from bench.results import ToolOutput
from rpc_srv.settings import Settings as RpcSettings
from rpc_srv.store import lua

CONNECTIONS = 50
KEYSPACE = 1000
KEY = "im:{rbench:__rand_int__}"  # redis-benchmark puts 12 random digits there
READ_KEY = "read:{rbench:__rand_int__}"
TEXT = "a text of sixty characters, the middle of the forty to eighty"
_ROW = re.compile(r'"([\d.]+)","([\d.]+)","([\d.]+)","([\d.]+)","([\d.]+)","([\d.]+)","([\d.]+)"$')


@dataclass(frozen=True)
class Test:
    name: str
    command: list[str]


def tests(client: redis.Redis, layout: str = STREAM) -> list[Test]:
    """The commands to run for one layout; sends first, so the pulls find full pages."""
    ttl = str(RpcSettings().idempotency_ttl)  # as the store passes it
    retention = str(RpcSettings().retention_days * 86_400_000_000)
    if layout == STREAM:
        send_sha = str(client.script_load(lua("send.lua")))
        text = orjson.dumps(TEXT).decode()
        # As MessageStore.send passes them on a single server: the chat, its read
        # cursors and both members' lists ("rbench" has a chat with every peer).
        keys = [KEY, READ_KEY, "chats:{rbench}", "chats:{__rand_int__}"]
        send = ["EVALSHA", send_sha, str(len(keys)), *keys, "0", text, ttl, retention, "2"]
        # A pull of 10, as MessageStore.pull asks for it (without a retention).
        plan = [
            Test("redis-send", send),
            Test("redis-pull", ["XRANGE", KEY, "0", "+", "COUNT", "11"]),
            Test("redis-pull-reverse", ["XREVRANGE", KEY, "+", "-", "COUNT", "11"]),
        ]
        return [Test("redis-ping", ["PING"]), *plan]
    send_sha = str(client.script_load(legacy_script("send.lua")))
    pull_sha = str(client.script_load(legacy_script("pull.lua")))
    tail = encode_member_tail("rbench", TEXT).decode()
    send = ["EVALSHA", send_sha, "1", KEY, tail, ttl]
    pull = ["EVALSHA", pull_sha, "1", KEY, "0", "10", "0"]
    reverse = [*pull]
    reverse[6] = "1"
    return [
        Test("redis-send (sorted set)", send),
        Test("redis-pull (sorted set)", pull),
        Test("redis-pull-reverse (sorted set)", reverse),
    ]


def run_redis_benchmark(redis_url: str, test: Test, requests: int) -> ToolOutput:
    parts = urlsplit(redis_url)
    argv = [
        "redis-benchmark",
        "-h",
        parts.hostname or "127.0.0.1",
        "-p",
        str(parts.port or 6379),
        "-n",
        str(requests),
        "-c",
        str(CONNECTIONS),
        "-P",
        "1",
        "-r",
        str(KEYSPACE),
        "--csv",
        *test.command,
    ]
    status, out, err = run_tool(argv, 600 + GRACE_S)
    return parse(argv, status, out, err, requests)


def parse(argv: list[str], status: int, out: str, err: str, requests: int) -> ToolOutput:
    """The CSV row (its quoted test name may hold quotes: match the numbers from the end)."""
    row = next((m for ln in out.splitlines() if (m := _ROW.search(ln.strip()))), None)
    errors = sum(1 for ln in (out + err).splitlines() if "rror" in ln)
    if status != 0 or row is None or errors:
        detail = (err or out).strip().splitlines()[-1:] or ["no output"]
        return ToolOutput("redis-benchmark", argv, 0, 0.0, 0.0, {}, failure=detail[0])
    rps, avg, _min, p50, _p95, p99, top = (float(v) for v in row.groups())
    latency: dict[str, float | None] = {
        "p50": p50,
        "p90": None,
        "p99": p99,
        "p99.9": None,
        "mean": avg,
        "max": top,
    }
    duration = requests / rps if rps else 0.0
    return ToolOutput("redis-benchmark", argv, requests, duration, rps, latency)
