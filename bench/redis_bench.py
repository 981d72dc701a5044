"""The store's ceiling: redis-benchmark running the project's own Lua scripts.

The scripts are loaded with SCRIPT LOAD and called by EVALSHA with keys of the
store's shape (``im:{rbench:<12 digits>}``, 1000 chats via ``-r``) and the
arguments ``rpc_srv/store.py`` passes, so this is what Redis alone can do per
send and per pull, with no Python in the way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib.resources import files
from urllib.parse import urlsplit

import redis

from bench.loadgen import GRACE_S, run_tool
from bench.results import ToolOutput
from rpc_srv.settings import Settings as RpcSettings
from rpc_srv.store import encode_member_tail

CONNECTIONS = 50
KEYSPACE = 1000
KEY = "im:{rbench:__rand_int__}"  # redis-benchmark puts 12 random digits there
TEXT = "a text of sixty characters, the middle of the forty to eighty"
_ROW = re.compile(r'"([\d.]+)","([\d.]+)","([\d.]+)","([\d.]+)","([\d.]+)","([\d.]+)","([\d.]+)"$')


@dataclass(frozen=True)
class Test:
    name: str
    command: list[str]


def tests(client: redis.Redis) -> list[Test]:
    """The commands to run; sends first, so the pulls find full pages."""
    lua = files("rpc_srv").joinpath("lua")
    send_sha = str(client.script_load(lua.joinpath("send.lua").read_text("utf-8")))
    pull_sha = str(client.script_load(lua.joinpath("pull.lua").read_text("utf-8")))
    tail = encode_member_tail("rbench", TEXT).decode()
    idempotency_ttl = RpcSettings().idempotency_ttl  # as the store passes it
    return [
        Test("redis-ping", ["PING"]),
        Test("redis-send", ["EVALSHA", send_sha, "1", KEY, tail, str(idempotency_ttl)]),
        Test("redis-pull", ["EVALSHA", pull_sha, "1", KEY, "0", "10", "0"]),
        Test("redis-pull-reverse", ["EVALSHA", pull_sha, "1", KEY, "0", "10", "1"]),
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
