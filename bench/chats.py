"""``python -m bench.chats``: what the conversation lists cost, in one run.

Two stacks side by side (bench/stack.py's way: Redis with AOF, the RPC
service, the front end, each on free loopback ports):

- **A**, the code before the lists (``--before``, default 2007266), checked
  out with ``git worktree add`` into a temporary folder and run from there
  (``PYTHONPATH=<that folder>``, ``PYTHONSAFEPATH=1`` so the current folder is
  not put first on ``sys.path``);
- **B**, this checkout as it is (HEAD and any uncommitted change).

Which code each runs is checked before measuring: a send through B lists the
chat in both members' ``chats:{member}``, one through A does not, and
``GET /api/chats`` answers on B only.

1. **Send**: wrk ``bench/wrk/send.lua`` at ``--connections`` (50), rounds
   alternating A B, B A, ... (``--rounds``); before every run that stack's
   Redis is emptied (FLUSHALL) and gets the 1000 workload chats again
   (``--messages`` each, with their lists and read cursors), and its AOF is
   rewritten, so every run starts from the same state. req/s, p99 and CPU µs
   per request (front end, RPC, Redis, from /proc) per run; the summary gives
   medians and B/A.
2. **Chats**: on B's Redis, FLUSHALLed, one user per size of ``--sizes``
   (10, 100, 1000, 100000 conversations), preloaded with pipelines in the
   store's layout; each user's first page is checked through the API, then
   wrk ``bench/wrk/chats.lua`` (``GET /api/chats?user=U&limit=20``) per size,
   the order of the sizes reversed every other round.
3. **Memory**, from that preload: ``MEMORY USAGE`` of each user's list and of
   every chat's read hash, stream and peer's list, and the ``INFO memory``
   ``used_memory`` growth of each preload step, per conversation.

Results: ``<out>/<UTC time>-chats/summary.md`` and ``results.json``, the
servers' logs in ``logs/``. Exit status 0, 1 (``--smoke`` saw a request
fail), 2 (a step broke: a report of what was measured is written anyway),
130 (interrupted). Every process started is stopped by its PID, and the
worktree is removed, in every case.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
import redis

from bench import dataset, wrk_runner
from bench.loadgen import GRACE_S, run_tool
from bench.measure import measure
from bench.results import ToolOutput, machine_info, write_json
from bench.variants import (
    REPO,
    Side,
    aof_rewrites,
    cells,
    checkout,
    cpu_of,
    fmt,
    http,
    measured,
    median_of,
    ratio,
    row_of,
    start_side,
    worker_settings,
)
from rpc_srv.store import LAYOUT, LAYOUT_KEY, chat_key, list_key, read_key

LISTS_DONE_KEY = "pullchat:lists"  # rpc_srv/backfill.py's DONE_KEY

RESULTS = REPO / "bench" / "results"
BEFORE = "2007266"  # "make run needs Redis 7...": the last commit without the lists
SIZES = (10, 100, 1000, 100_000)
SMOKE_SIZES = (10, 100, 1000)
MEMORY_SIZES = (1000, 100_000)  # the sizes whose memory the summary reports
LIMIT = 20  # the page asked for: GET /api/chats?user=U&limit=20
TARGET = 0.10  # the issue's: within 10%
WARMUP_S = 2
PAUSE_S = 0.5  # before each run: the previous run's connections drain
LIST_PAIRS_PER_ZADD = 1000
SPACING_US = dataset.SPACING_US  # preloaded conversations are 1 ms apart, ending before now
SMOKE = {"duration": 2, "rounds": 1, "messages": 5}


# -- the two stacks ---------------------------------------------------------------


def code_check(side: Side, lists_expected: bool) -> dict[str, Any]:
    """Which code the stack runs, told by what a send writes and whether /api/chats answers."""
    chat = "probe0:probe1"
    body = orjson.dumps({"chat": chat, "sender": "probe0", "text": "which code?"})
    sent, _ = http("POST", f"{side.url}/api/send", body)
    client = side.redis()
    try:
        listed = client.zscore(list_key("probe1"), chat) is not None
        read_hash = bool(client.exists(read_key(chat)))
    finally:
        client.close()
    chats_status, _ = http("GET", f"{side.url}/api/chats?user=probe0")
    found = {
        "send_status": sent,
        "send_listed_chat": listed,
        "send_wrote_read_cursor": read_hash,
        "chats_status": chats_status,
    }
    if sent != 200 or listed != lists_expected or (chats_status == 200) != lists_expected:
        raise RuntimeError(f"stack {side.label} does not run the code meant: {found}")
    return found


# -- preloading -----------------------------------------------------------------


def pipelined(url: str, commands: Iterable[tuple[Any, ...]]) -> int:
    """Send `commands` in pipelines of COMMANDS_PER_PIPELINE on a connection of their own.

    The connection is closed at the end, so its buffers are not counted in a
    used_memory read afterwards.
    """
    client = redis.Redis.from_url(url, socket_timeout=120)
    sent = 0
    try:
        pipe = client.pipeline(transaction=False)
        queued = 0
        for command in commands:
            pipe.execute_command(*command)  # type: ignore[no-untyped-call]
            queued += 1
            if queued == dataset.COMMANDS_PER_PIPELINE:
                pipe.execute()
                sent += queued
                queued = 0
        if queued:
            pipe.execute()
            sent += queued
    finally:
        client.close()
    return sent


def empty(client: redis.Redis) -> None:
    """FLUSHALL, then the markers an RPC service sets on a new store put back.

    The layout (store.check_layout) and, where the code has it, that the store
    needs no listing of chats stored before lists (rpc_srv/backfill.py): both
    are only read when an RPC service starts.
    """
    client.flushall()
    client.set(LAYOUT_KEY, LAYOUT)
    client.set(LISTS_DONE_KEY, b"1")


def reset_send_data(side: Side, messages: int, seed: int) -> None:
    """The workload chats afresh: `messages` each, and the lists and read cursors of them.

    The lists and cursors are what B's sends keep up to date; A never reads them.
    """
    client = side.redis()
    try:
        empty(client)
        chats = [(dataset.workload_chat(i), messages) for i in range(dataset.WORKLOAD_CHATS)]
        loaded = dataset.preload(client, chats, seed)

        def extras() -> Iterator[tuple[Any, ...]]:
            for item in loaded:
                a, b = item.chat.split(":")
                last = item.last_send_time
                # preload alternates a, b, a, ...: the last message is a's if count is odd
                last_place = b"0" if item.count % 2 == 1 else b"1"
                other = b"1" if last_place == b"0" else b"0"
                before = item.send_time(item.count - 2) if item.count > 1 else 0
                yield ("HSET", read_key(item.chat), last_place, last, other, before)
                yield ("ZADD", list_key(a), last, item.chat)
                yield ("ZADD", list_key(b), last, item.chat)

        pipelined(side.target.redis_url or "", extras())
        dataset.wait_for_aof_rewrite(client)
    finally:
        client.close()


@dataclass
class Preloaded:
    """A user with `size` conversations, one message each, 1 ms apart (0 = oldest)."""

    user: str
    size: int
    first: int
    texts: list[str]

    def peer(self, k: int) -> str:
        return f"{self.user}p{k:06d}"

    def chat(self, k: int) -> str:
        return f"{self.user}:{self.peer(k)}"  # canonical: the user's name is a prefix of its peer's

    def send_time(self, k: int) -> int:
        return self.first + k * SPACING_US

    def user_sent(self, k: int) -> bool:
        return k % 2 == 0  # every other message is the user's own (read), the others unread


def used_memory(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def memory_usage_total(client: redis.Redis, keys: Iterable[str]) -> tuple[int, int]:
    """(sum of MEMORY USAGE key SAMPLES 0, number of keys), pipelined."""
    total = count = queued = 0
    pipe = client.pipeline(transaction=False)

    def flush() -> None:
        nonlocal total, queued
        for value in pipe.execute():
            total += int(value or 0)
        queued = 0

    for key in keys:
        pipe.memory_usage(key, samples=0)
        queued += 1
        count += 1
        if queued == dataset.COMMANDS_PER_PIPELINE:
            flush()
    if queued:
        flush()
    return total, count


def preload_user(
    url: str, client: redis.Redis, size: int, seed: int
) -> tuple[Preloaded, dict[str, Any]]:
    """User ``u<size>`` with `size` conversations in the store's layout, and what they cost.

    Each conversation: stream ``im:{chat}`` with one entry ``<send_time>-1``
    (field: the sender's place, value: the text as JSON), ``read:{chat}`` with
    the sender's cursor at it, and the chat in both members' lists. Written in
    four steps, each measured by ``used_memory`` before and after.
    """
    user = f"u{size}"
    source = dataset.TextSource(seed + size)
    first = time.time_ns() // 1000 - (size + 1) * SPACING_US
    pre = Preloaded(user, size, first, [source.text() for _ in range(size)])

    def place(k: int) -> bytes:
        return b"0" if pre.user_sent(k) else b"1"

    def streams() -> Iterator[tuple[Any, ...]]:
        for k in range(size):
            text = orjson.dumps(pre.texts[k])
            yield ("XADD", chat_key(pre.chat(k)), f"{pre.send_time(k)}-1", place(k), text)

    def read_cursors() -> Iterator[tuple[Any, ...]]:
        for k in range(size):
            yield ("HSET", read_key(pre.chat(k)), place(k), pre.send_time(k))

    def peer_lists() -> Iterator[tuple[Any, ...]]:
        for k in range(size):
            yield ("ZADD", list_key(pre.peer(k)), pre.send_time(k), pre.chat(k))

    def user_list() -> Iterator[tuple[Any, ...]]:
        for start in range(0, size, LIST_PAIRS_PER_ZADD):
            pairs: list[Any] = []
            for k in range(start, min(size, start + LIST_PAIRS_PER_ZADD)):
                pairs += [pre.send_time(k), pre.chat(k)]
            yield ("ZADD", list_key(user), *pairs)

    steps: list[tuple[str, Callable[[], Iterator[tuple[Any, ...]]]]] = [
        ("streams", streams),
        ("read_hashes", read_cursors),
        ("peer_lists", peer_lists),
        ("user_list", user_list),
    ]
    deltas: dict[str, int] = {}
    started = time.monotonic()
    before = used_memory(client)
    for name, commands in steps:
        pipelined(url, commands())
        after = used_memory(client)
        deltas[name] = after - before
        before = after
    load_seconds = time.monotonic() - started
    if client.zcard(list_key(user)) != size:
        raise RuntimeError(f"{user}: {client.zcard(list_key(user))} chats listed, {size} meant")

    chats = [pre.chat(k) for k in range(size)]
    list_bytes = int(client.memory_usage(list_key(user), samples=0) or 0)
    read_bytes, _ = memory_usage_total(client, (read_key(c) for c in chats))
    stream_bytes, _ = memory_usage_total(client, (chat_key(c) for c in chats))
    peer_bytes, _ = memory_usage_total(client, (list_key(pre.peer(k)) for k in range(size)))
    encoding = client.object("encoding", list_key(user))
    figure = {
        "user": user,
        "conversations": size,
        "load_seconds": round(load_seconds, 2),
        "list_encoding": encoding.decode() if isinstance(encoding, bytes) else str(encoding),
        "memory_usage": {
            "user_list": list_bytes,
            "read_hashes": read_bytes,
            "streams": stream_bytes,
            "peer_lists": peer_bytes,
        },
        "memory_usage_per_conversation": {
            "user_list": round(list_bytes / size, 1),
            "read_hash": round(read_bytes / size, 1),
            "stream": round(stream_bytes / size, 1),
            "peer_list": round(peer_bytes / size, 1),
        },
        "used_memory_delta": {**deltas, "total": sum(deltas.values())},
        "used_memory_delta_per_conversation": {
            **{k: round(v / size, 1) for k, v in deltas.items()},
            "total": round(sum(deltas.values()) / size, 1),
        },
    }
    return pre, figure


def chats_url(base: str, user: str, cursor: str = "") -> str:
    query = {"user": user, "limit": str(LIMIT), **({"cursor": cursor} if cursor else {})}
    return f"{base}/api/chats?{urlencode(query)}"


def verify(base: str, pre: Preloaded) -> dict[str, Any]:
    """The user's first page (and second) through the API, against what was preloaded."""
    status, raw = http("GET", chats_url(base, pre.user))
    if status != 200:
        raise RuntimeError(f"GET /api/chats for {pre.user}: {status} {raw[:200]!r}")
    body = orjson.loads(raw)
    first_bytes = len(raw)
    problems: list[str] = []
    entries = body["chats"]
    if len(entries) != min(LIMIT, pre.size):
        problems.append(f"{len(entries)} chats on the page")
    for j, entry in enumerate(entries):
        k = pre.size - 1 - j
        t = pre.send_time(k)
        sender = pre.user if pre.user_sent(k) else pre.peer(k)
        expected = {
            "chat": pre.chat(k),
            "peer": pre.peer(k),
            "last_message": {
                "chat": pre.chat(k),
                "text": pre.texts[k],
                "sender": sender,
                "send_time": t,
            },
            "unread": 0 if pre.user_sent(k) else 1,
            "read_cursor": t if pre.user_sent(k) else 0,
        }
        if entry != expected:
            problems.append(f"entry {j}: {entry} != {expected}")
            break
    if body["has_more"] != (pre.size > LIMIT):
        problems.append(f"has_more {body['has_more']}")
    if body["latest_activity"] != pre.send_time(pre.size - 1):
        problems.append(f"latest_activity {body['latest_activity']}")
    second_page_ok = None
    if pre.size > LIMIT and not problems:
        status, raw = http("GET", chats_url(base, pre.user, body["next_cursor"]))
        following = orjson.loads(raw)["chats"] if status == 200 else []
        second_page_ok = bool(following) and following[0]["chat"] == pre.chat(pre.size - 1 - LIMIT)
        if not second_page_ok:
            problems.append(f"second page: {status} {following[:1]}")
    if problems:
        raise RuntimeError(f"{pre.user}: the API does not read the preload back: {problems}")
    return {
        "user": pre.user,
        "page": len(entries),
        "bytes": first_bytes,
        "second_page_ok": second_page_ok,
    }


# -- runs -------------------------------------------------------------------------


def wrk_chats(
    base: str, user: str, connections: int, duration: int, seed: int
) -> tuple[ToolOutput, int]:
    """One wrk run of chats.lua, and the bytes it read (answers with their headers)."""
    argv = [
        "wrk",
        f"-t{min(wrk_runner.THREADS, connections)}",
        f"-c{connections}",
        f"-d{duration}s",
        f"--timeout={wrk_runner.TIMEOUT_S}s",
        "-s",
        str(wrk_runner.script("chats")),
        base,
        "--",
        str(seed),
        user,
        str(LIMIT),
    ]
    status, out, err = run_tool(argv, duration + GRACE_S)
    output = wrk_runner.parse(argv, status, out, err)
    line = next((ln for ln in out.splitlines() if ln.startswith("BENCH_RESULT ")), None)
    read = int(orjson.loads(line.removeprefix("BENCH_RESULT "))["bytes"]) if line else 0
    return output, read


def send_run(
    side: Side, opts: argparse.Namespace, round_no: int, warmup: bool = False
) -> dict[str, Any]:
    reset_send_data(side, opts.messages, opts.seed)
    time.sleep(PAUSE_S)
    duration = WARMUP_S if warmup else opts.duration
    rewrites = aof_rewrites(side)
    result = measure(
        f"send {side.label}",
        "chats-send",
        opts.connections,
        {"stack": side.label, "round": round_no},
        side.target.roles,
        lambda: wrk_runner.run_wrk(
            side.url, wrk_runner.script("send"), opts.connections, duration, opts.seed
        ),
    )
    row = {"round": round_no, "stack": side.label, "warmup": warmup, **row_of(result)}
    row["aof_rewrites_during"] = aof_rewrites(side) - rewrites
    print(orjson.dumps(row).decode(), flush=True)
    return row


def chats_run(
    side: Side, pre: Preloaded, opts: argparse.Namespace, round_no: int, duration: int
) -> dict[str, Any]:
    time.sleep(PAUSE_S)
    read: list[int] = []

    def run() -> ToolOutput:
        output, total = wrk_chats(side.url, pre.user, opts.connections, duration, opts.seed)
        read.append(total)
        return output

    result = measure(
        f"chats {pre.size}",
        "chats-list",
        opts.connections,
        {"user": pre.user, "conversations": pre.size, "round": round_no},
        side.target.roles,
        run,
    )
    row = {"round": round_no, "conversations": pre.size, "user": pre.user, **row_of(result)}
    requests = result.output.requests
    row["bytes_per_response"] = round(sum(read) / requests) if requests else None
    print(orjson.dumps(row).decode(), flush=True)
    return row


# -- summaries --------------------------------------------------------------------


def send_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    measured = [r for r in rows if not r["warmup"]]
    out: dict[str, Any] = {}
    metrics: dict[str, Callable[[dict[str, Any]], float | None]] = {
        "rps": lambda r: r["rps"],
        "p99_ms": lambda r: r["p99_ms"],
        **{f"cpu_{role}": cpu_of(role) for role in ("total", "http", "rpc", "redis")},
        "other_cores": lambda r: r["other_cores"],
    }
    for name, pick in metrics.items():
        a = median_of([r for r in measured if r["stack"] == "A"], pick)
        b = median_of([r for r in measured if r["stack"] == "B"], pick)
        out[name] = {"A": a, "B": b, "B/A": ratio(b, a)}
    rps = out["rps"]["B/A"]
    cpu = out["cpu_total"]["B/A"]
    out["within_target"] = {
        "rps": rps is not None and rps >= 1 - TARGET,
        "cpu_per_request": cpu is not None and cpu <= 1 + TARGET,
    }
    return out


def chats_summary(rows: list[dict[str, Any]], sizes: list[int]) -> dict[str, Any]:
    per_size: dict[str, Any] = {}
    for size in sizes:
        mine = [r for r in rows if r["conversations"] == size]
        per_size[str(size)] = {
            "rps": median_of(mine, lambda r: r["rps"]),
            "cpu_total": median_of(mine, cpu_of("total")),
            "cpu_redis": median_of(mine, cpu_of("redis")),
            "p99_ms": median_of(mine, lambda r: r["p99_ms"]),
            "bytes_per_response": median_of(mine, lambda r: r["bytes_per_response"]),
            "other_cores": median_of(mine, lambda r: r["other_cores"]),
        }
    base = per_size[str(sizes[0])]["rps"]
    full = next((s for s in sizes if s > LIMIT), None)  # the smallest size with full pages
    full_rps = per_size[str(full)]["rps"] if full is not None else None
    for size in sizes:
        entry = per_size[str(size)]
        entry["x_first"] = ratio(entry["rps"], base)
        entry["x_full_page"] = ratio(entry["rps"], full_rps) if size > LIMIT else None
    rates = [v["rps"] for v in per_size.values() if v["rps"] is not None]
    full_rates = [per_size[str(s)]["rps"] for s in sizes if s > LIMIT and per_size[str(s)]["rps"]]
    full_cpu = [per_size[str(s)]["cpu_total"] for s in sizes if s > LIMIT]
    full_cpu = [c for c in full_cpu if c]
    return {
        "cpu_max_over_min_full_pages": (
            round(max(full_cpu) / min(full_cpu), 3) if full_cpu else None
        ),
        "sizes": per_size,
        "base_size": sizes[0],
        "full_page_base_size": full,
        "min_over_max": round(min(rates) / max(rates), 3) if rates else None,
        "min_over_max_full_pages": (
            round(min(full_rates) / max(full_rates), 3) if full_rates else None
        ),
    }


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def markdown(report: dict[str, Any]) -> Iterator[str]:
    yield f"# Conversation lists: what they cost ({report['started']})\n\n"
    yield f"Command: `{report['command']}`\n\n"
    machine = report.get("machine", {})
    yield (
        f"Machine: {machine.get('cpu_count')} cores ({machine.get('cpu_model')}), load average "
        f"{fmt(machine.get('loadavg_start', [None])[0], 2)} at start, "
        f"{fmt(report.get('loadavg_end', [None])[0], 2)} at end. "
        f"Settings: c={report['connections']}, {report['duration']} s per run, "
        f"{report['rounds']} rounds.\n\n"
    )
    before = report.get("before", {})
    yield (
        f"- **A** = `{before.get('commit', '?')[:7]}` ({before.get('subject', '?')}), "
        "run from a `git worktree` of it\n"
        f"- **B** = the working tree (HEAD `{(machine.get('git_commit') or '?')[:7]}`, "
        f"uncommitted changes: {machine.get('git_dirty')})\n\n"
    )
    if report.get("error"):
        yield f"**The run broke**: {report['error']}\n\n"
    yield from send_markdown(report)
    yield from chats_markdown(report)
    yield from memory_markdown(report)
    failed = [r for r in report.get("send", []) + report.get("chats", []) if not r["ok"]]
    if failed:
        yield "\n## Failed runs\n\n"
        for r in failed:
            what = f"send {r['stack']}" if "stack" in r else f"chats {r['conversations']}"
            yield f"- {what}, round {r['round']}: {r['failure']}\n"


def send_markdown(report: dict[str, Any]) -> Iterator[str]:
    send = report.get("send_summary")
    if not send:
        return
    yield "## 1. Send: with the list updates (B) vs before (A)\n\n"
    yield f"wrk `bench/wrk/send.lua`, c={report['connections']}, medians of the rounds "
    yield "(each run on a Redis FLUSHALLed and preloaded afresh). CPU: µs per request of "
    yield "each server's process tree.\n\n"
    yield cells("median", "A (before)", "B (lists)", "B/A") + cells(*["---"] * 4)
    labels = [
        ("rps", "req/s", 0),
        ("cpu_total", "CPU µs/req, total", 1),
        ("cpu_http", "CPU µs/req, front end", 1),
        ("cpu_rpc", "CPU µs/req, RPC", 1),
        ("cpu_redis", "CPU µs/req, Redis", 1),
        ("p99_ms", "p99 ms", 2),
        ("other_cores", "other cores (noise)", 2),
    ]
    for key, label, digits in labels:
        v = send[key]
        yield cells(label, fmt(v["A"], digits), fmt(v["B"], digits), fmt(v["B/A"], 3))
    hit = send["within_target"]
    yield (
        f"\nTarget (within 10%): req/s B/A {fmt(send['rps']['B/A'], 3)} -> "
        f"{verdict(hit['rps'])}; CPU per request B/A {fmt(send['cpu_total']['B/A'], 3)} -> "
        f"{verdict(hit['cpu_per_request'])}.\n\n"
    )
    head = ("round", "stack", "req/s", "p99 ms", "CPU µs/req total", "front end", "RPC")
    tail = ("Redis", "other cores", "AOF rewrites", "ok")
    yield cells(*head, *tail) + cells(*["---"] * 11)
    for r in report["send"]:
        if r["warmup"]:
            continue
        c = r["cpu_us_per_request"]
        yield cells(
            r["round"],
            r["stack"],
            fmt(r["rps"]),
            fmt(r["p99_ms"], 2),
            *(fmt(c.get(role), 1) for role in ("total", "http", "rpc", "redis")),
            fmt(r["other_cores"], 2),
            r["aof_rewrites_during"],
            r["ok"],
        )
    yield "\n"


def chats_markdown(report: dict[str, Any]) -> Iterator[str]:
    chats = report.get("chats_summary")
    if not chats:
        return
    yield f"## 2. `GET /api/chats?user=U&limit={LIMIT}` by the size of U's list\n\n"
    yield f"wrk `bench/wrk/chats.lua` on B, c={report['connections']}, medians of the rounds "
    yield "(the sizes in turn, their order reversed every other round).\n\n"
    yield cells(
        "conversations",
        "chats on the page",
        "req/s",
        f"x {chats['base_size']:,}-user",
        f"x {fmt(chats['full_page_base_size'])}-user",
        "CPU µs/req",
        "Redis µs/req",
        "p99 ms",
        "bytes/response",
    ) + cells(*["---"] * 9)
    for size, v in chats["sizes"].items():
        yield cells(
            f"{int(size):,}",
            min(int(size), LIMIT),
            fmt(v["rps"]),
            fmt(v["x_first"], 3),
            fmt(v["x_full_page"], 3),
            fmt(v["cpu_total"], 1),
            fmt(v["cpu_redis"], 1),
            fmt(v["p99_ms"], 2),
            fmt(v["bytes_per_response"]),
        )
    every, full = chats["min_over_max"], chats["min_over_max_full_pages"]
    yield (
        f"\nTarget (within 10% of each other): slowest / fastest median over all sizes "
        f"{fmt(every, 3)} -> {verdict(every is not None and every >= 1 - TARGET)}; over the "
        f"sizes with a full page of {LIMIT}: {fmt(full, 3)} -> "
        f"{verdict(full is not None and full >= 1 - TARGET)}. A user with fewer than {LIMIT} "
        "conversations gets a shorter page (fewer conversation.lua calls, a smaller "
        "answer): not the same request. CPU µs per request (less disturbed by the other "
        f"work on the machine than req/s), most / least over the full pages: "
        f"{fmt(chats['cpu_max_over_min_full_pages'], 3)}.\n\n"
    )
    head = ("round", "conversations", "req/s", "p99 ms", "CPU µs/req total", "front end")
    yield cells(*head, "RPC", "Redis", "other cores", "ok") + cells(*["---"] * 10)
    for r in report["chats"]:
        c = r["cpu_us_per_request"]
        yield cells(
            r["round"],
            f"{r['conversations']:,}",
            fmt(r["rps"]),
            fmt(r["p99_ms"], 2),
            *(fmt(c.get(role), 1) for role in ("total", "http", "rpc", "redis")),
            fmt(r["other_cores"], 2),
            r["ok"],
        )
    yield "\n"


def memory_markdown(report: dict[str, Any]) -> Iterator[str]:
    memory = [m for m in report.get("memory", []) if m["conversations"] in report["memory_sizes"]]
    if not memory:
        return
    yield "## 3. Redis bytes per conversation\n\n"
    yield cells(
        "user's conversations N",
        "list encoding",
        "user's list (MEMORY USAGE / N)",
        "read hash per chat",
        "stream per chat",
        "peer's list per chat",
        "used_memory: streams",
        "read hashes",
        "peers' lists",
        "user's list",
        "total",
    ) + cells(*["---"] * 11)
    for m in memory:
        u = m["memory_usage_per_conversation"]
        d = m["used_memory_delta_per_conversation"]
        yield cells(
            f"{m['conversations']:,}",
            m["list_encoding"],
            *(fmt(u[k], 1) for k in ("user_list", "read_hash", "stream", "peer_list")),
            *(fmt(d[k], 1) for k in ("streams", "read_hashes", "peer_lists", "user_list", "total")),
        )
    yield (
        "\nAll in bytes per conversation. **MEMORY USAGE** (`SAMPLES 0`, exact) counts one "
        "key's own allocations: its name, its value object and encoding (listpack, or "
        "skiplist + dict for a larger sorted set), and its entry in the keyspace dict. "
        "The user's list column is the whole `chats:{user}` over its N members: what one "
        "more conversation adds to a member's list of that size. The read hash "
        "(`read:{chat}`), stream and peer's list (`chats:{peer}`, one member) are whole "
        "keys, summed over the N chats and divided by N; a read hash is shared by the "
        "chat's two members. **used_memory** is `INFO memory` before and after each "
        "preload step (N commands, each step on a connection of its own, closed before "
        "the reading), over N: it adds what MEMORY USAGE leaves out, the keyspace dict's "
        "bucket array (it doubles at powers of two, landing in whichever step crosses "
        "one) and allocator rounding. What the lists add per conversation is the entry in "
        "each of its two members' lists, plus the read hash: the stream is the message "
        "itself, there before the lists.\n"
    )


# -- main -------------------------------------------------------------------------


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.chats",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per run (10)")
    parser.add_argument("--connections", type=int, default=50, help="wrk connections (50)")
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds (4)")
    parser.add_argument("--before", default=BEFORE, help=f"revision of stack A ({BEFORE})")
    parser.add_argument(
        "--sizes", default=",".join(str(s) for s in SIZES), help="conversations per user"
    )
    parser.add_argument(
        "--messages", type=int, default=20, help="preloaded messages per workload chat (20)"
    )
    parser.add_argument("--http-workers", type=int, help="HTTP_WORKERS of both stacks")
    parser.add_argument("--rpc-workers", type=int, help="RPC_WORKERS of both stacks")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="2 s runs, 1 round, sizes 10,100,1000: checks it runs; exit 1 on any request error",
    )
    opts = parser.parse_args(argv)
    if opts.smoke:
        opts.duration, opts.rounds, opts.messages = (
            SMOKE["duration"],
            SMOKE["rounds"],
            SMOKE["messages"],
        )
        opts.sizes = ",".join(str(s) for s in SMOKE_SIZES)
    opts.size_list = sorted({int(s) for s in opts.sizes.split(",") if s.strip()})
    if min(opts.duration, opts.connections, opts.rounds, opts.messages, *opts.size_list) < 1:
        parser.error("--duration, --connections, --rounds, --messages and --sizes must be >= 1")
    return opts


def measure_send(sides: dict[str, Side], opts: argparse.Namespace, report: dict[str, Any]) -> None:
    rows: list[dict[str, Any]] = report["send"]
    for label in ("A", "B"):
        rows.append(send_run(sides[label], opts, 0, warmup=True))
    for round_no in range(1, opts.rounds + 1):
        order = ("A", "B") if round_no % 2 == 1 else ("B", "A")
        for label in order:
            rows.append(send_run(sides[label], opts, round_no))
    report["send_summary"] = send_summary(rows)


def measure_chats(side: Side, opts: argparse.Namespace, report: dict[str, Any]) -> None:
    client = side.redis()
    users: list[Preloaded] = []
    try:
        empty(client)
        for size in opts.size_list:
            pre, figure = preload_user(side.target.redis_url or "", client, size, opts.seed)
            users.append(pre)
            report["memory"].append(figure)
            print(orjson.dumps(figure).decode(), flush=True)
        dataset.wait_for_aof_rewrite(client)
    finally:
        client.close()
    report["verified"] = [verify(side.url, pre) for pre in users]
    chats_run(side, users[-1], opts, 0, WARMUP_S)  # warm-up, not reported
    rows: list[dict[str, Any]] = report["chats"]
    for round_no in range(1, opts.rounds + 1):
        order = users if round_no % 2 == 1 else users[::-1]
        for pre in order:
            rows.append(chats_run(side, pre, opts, round_no, opts.duration))
    report["chats_summary"] = chats_summary(rows, opts.size_list)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    opts = parse(argv)
    started = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out: Path = opts.out / f"{started}-chats"
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "started": started,
        "command": " ".join(["python -m bench.chats", *argv]),
        "duration": opts.duration,
        "connections": opts.connections,
        "rounds": opts.rounds,
        "sizes": opts.size_list,
        "memory_sizes": [s for s in opts.size_list if s in MEMORY_SIZES] or opts.size_list[-1:],
        "messages_per_workload_chat": opts.messages,
        "machine": machine_info(),
        "send": [],
        "chats": [],
        "memory": [],
    }
    sides: dict[str, Side] = {}

    def run() -> None:
        with checkout(opts.before) as (tree, before):
            before["has_lists"] = (tree / "rpc_srv" / "lua" / "chats.lua").exists()
            report["before"] = before
            if before["has_lists"]:
                print(f"warning: {opts.before} has rpc_srv/lua/chats.lua already", file=sys.stderr)
            try:
                logs = out / "logs"
                workers = worker_settings(opts.http_workers, opts.rpc_workers)
                sides["A"] = start_side("A", before["commit"], logs, "before", tree, workers)
                sides["B"] = start_side("B", "working tree", logs, "", None, workers)
                report["settings"] = {k: s.target.env for k, s in sides.items()}
                report["imports"] = {k: s.imports for k, s in sides.items()}
                report["code_check"] = {
                    "A": code_check(sides["A"], lists_expected=False),
                    "B": code_check(sides["B"], lists_expected=True),
                }
                measure_send(sides, opts, report)
                measure_chats(sides["B"], opts, report)
            finally:
                for side in reversed(list(sides.values())):
                    side.target.stop()

    status = measured(report, out, run)
    report["loadavg_end"] = os.getloadavg()
    write_json(out / "results.json", report)
    (out / "summary.md").write_text("".join(markdown(report)))
    print(out / "summary.md")
    if status == 0 and opts.smoke:
        failed = [r for r in report["send"] + report["chats"] if not r["ok"]]
        if failed:
            print(f"smoke: {len(failed)} run(s) had failed requests", file=sys.stderr)
            status = 1
    return status


if __name__ == "__main__":
    raise SystemExit(main())
