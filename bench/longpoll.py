"""``python -m bench.longpoll``: what waiting pulls cost, and how soon they wake.

One run starts the stack (bench/stack.py), preloads the workload chats, and
for each count of parked waiters (``--waiters``, default 0,100,1000,10000;
0 gives the stack's own idle CPU):

1. parks that many tail loops (``pull(cursor=tail_cursor, wait=30)``), one per
   chat of its own, spread over the front-end workers by the kernel;
2. measures the stack's CPU while they wait and nothing is sent
   (``--idle-seconds``), and its memory (RSS of every process) against before;
3. sends ``--probes`` messages one after another, each to a random waiter's
   chat, and takes the delivery latency: send acknowledged -> that waiter's
   answer read (both seen by this process's clock).

Then send and pull throughput with wrk at c=50, alternating rounds with no
waiter and with ``--load-waiters`` (1000) parked, in the same run.

The open file limit of this process (and so of the stack it starts) is
raised to its hard limit: 10,000 waiters are 20,000 sockets on loopback.
Results go to ``<out>/<UTC time>-longpoll/results.json`` and ``summary.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import re
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from bench import dataset, procstat, stack, wrk_runner
from bench.measure import measure

WAIT = 30  # each parked pull's wait: longer than any idle window here
PARK_BATCH = 250  # waiters connected at once, a step any listen backlog of 256 or more absorbs
SETTLE = 12.0  # after waiters go: their chats' watches linger 10 s, then are dropped


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


@dataclass
class Waiter:
    chat: str
    cursor: int = 0
    answers: int = 0
    answered: asyncio.Event = field(default_factory=asyncio.Event)
    answered_at: float = 0.0


class Waiters:
    """Tail loops, one per chat, each re-parked as soon as it answers."""

    def __init__(self, base: str, session: aiohttp.ClientSession, tag: str) -> None:
        self.base = base
        self.session = session
        self.tag = tag
        self.loops: list[Waiter] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.errors = 0

    async def park(self, count: int) -> None:
        start = len(self.loops)
        for first in range(start, start + count, PARK_BATCH):
            batch = range(first, min(first + PARK_BATCH, start + count))
            for i in batch:
                waiter = Waiter(f"w{i}-{self.tag}:peer{i}-{self.tag}")
                self.loops.append(waiter)
                self.tasks.append(asyncio.create_task(self._loop(waiter)))
            await self.until_parked(len(self.loops), 60)

    async def _loop(self, waiter: Waiter) -> None:
        url = f"{self.base}/api/pull"
        while True:
            params = {"chat": waiter.chat, "cursor": str(waiter.cursor), "wait": str(WAIT)}
            try:
                async with self.session.get(url, params=params) as resp:
                    body = orjson.loads(await resp.read())
            except (aiohttp.ClientError, TimeoutError, ValueError):
                self.errors += 1
                await asyncio.sleep(0.5)
                continue
            if resp.status != 200:
                self.errors += 1
                await asyncio.sleep(0.5)
                continue
            if body["messages"]:
                waiter.answered_at = time.perf_counter()
                waiter.answers += len(body["messages"])
                waiter.answered.set()
            waiter.cursor = body["tail_cursor"]

    async def parked(self) -> int:
        async with self.session.get(f"{self.base}/metrics") as resp:
            text = await resp.text()
        found = re.findall(r"^pullchat_http_waiting_pulls(?:\{[^}]*\})? (\S+)$", text, re.M)
        return int(sum(float(v) for v in found))

    async def until_parked(self, count: int, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while await self.parked() < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"only {await self.parked()} of {count} waiters parked")
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        self.loops.clear()
        self.tasks.clear()


async def probe(waiters: Waiters, sender: aiohttp.ClientSession, count: int) -> dict[str, Any]:
    """Send `count` messages one by one to random waiters; latency ack -> answer (ms)."""
    rng = random.Random(7)
    after_ack: list[float] = []
    after_send: list[float] = []
    lost = 0
    for _ in range(count):
        waiter = rng.choice(waiters.loops)
        waiter.answered.clear()
        first, second = waiter.chat.split(":")
        body = orjson.dumps({"chat": waiter.chat, "sender": first, "text": "ping " + second})
        started = time.perf_counter()
        async with sender.post(
            f"{waiters.base}/api/send", data=body, headers={"Content-Type": "application/json"}
        ) as resp:
            await resp.read()
            acked = time.perf_counter()
        try:
            await asyncio.wait_for(waiter.answered.wait(), 5)
        except TimeoutError:
            lost += 1
            continue
        after_ack.append((waiter.answered_at - acked) * 1000)
        after_send.append((waiter.answered_at - started) * 1000)
        await asyncio.sleep(0.01)
    return {
        "probes": count,
        "not_delivered_within_5s": lost,
        "ack_to_answer_ms": summary(after_ack),
        "send_to_answer_ms": summary(after_send),
    }


def summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    return {
        "p50": round(percentile(values, 0.50), 3),
        "p99": round(percentile(values, 0.99), 3),
        "max": round(max(values), 3),
        "mean": round(statistics.fmean(values), 3),
    }


def stack_pids(target: stack.Target) -> set[int]:
    return procstat.tree([pid for pids in target.roles.values() for pid in pids])


async def waiting_costs(
    target: stack.Target, counts: list[int], probes: int, idle_seconds: float
) -> list[dict[str, Any]]:
    results = []
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=WAIT + 15)
    async with (
        aiohttp.ClientSession(connector=connector, timeout=timeout) as session,
        aiohttp.ClientSession(timeout=timeout) as sender,
    ):
        for count in counts:
            waiters = Waiters(target.url, session, f"{count}-{time.time_ns() % 10**6}")
            pids = stack_pids(target)
            rss_before = procstat.rss_bytes(pids)
            await waiters.park(count)
            await asyncio.sleep(1)  # watches confirmed, first looks done
            rss_after = procstat.rss_bytes(pids)
            cpu_before = procstat.cpu_seconds(pids)
            await asyncio.sleep(idle_seconds)
            idle_cpu = procstat.cpu_seconds(pids) - cpu_before
            # No waiter: the stack's own idle CPU, the baseline of the others.
            delivery = await probe(waiters, sender, probes) if count else {}
            results.append(
                {
                    "waiters": count,
                    "idle_seconds": idle_seconds,
                    "idle_cpu_percent_of_one_core": round(idle_cpu / idle_seconds * 100, 2),
                    "rss_before_mb": round(rss_before / 2**20, 1),
                    "rss_parked_mb": round(rss_after / 2**20, 1),
                    "bytes_per_waiter": round((rss_after - rss_before) / count) if count else 0,
                    "client_errors": waiters.errors,
                    **delivery,
                }
            )
            print(orjson.dumps(results[-1]).decode(), flush=True)
            await waiters.stop()
            await asyncio.sleep(SETTLE)  # what comes next is not measured in their wake
    return results


async def with_parked(target: stack.Target, count: int, run: Any) -> Any:
    """`run()` (blocking: wrk) in a thread while `count` waiters are parked."""
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=WAIT + 15)
    ) as session:
        waiters = Waiters(target.url, session, f"load-{time.time_ns() % 10**6}")
        if count:
            await waiters.park(count)
            await asyncio.sleep(1)
        try:
            return await asyncio.to_thread(run)
        finally:
            await waiters.stop()
            if count:
                await asyncio.sleep(SETTLE)


def throughput(
    target: stack.Target, load_waiters: int, duration: int, rounds: int
) -> list[dict[str, Any]]:
    rows = []
    for round_no in range(rounds):
        for parked in (0, load_waiters):
            for workload in ("send", "pull"):

                def run(workload: str = workload, parked: int = parked) -> Any:
                    return measure(
                        f"{workload} with {parked} waiters",
                        "longpoll",
                        50,
                        {"waiters": parked},
                        target.roles,
                        lambda: wrk_runner.run_wrk(
                            target.url, wrk_runner.script(workload), 50, duration
                        ),
                    )

                result = asyncio.run(with_parked(target, parked, run))
                row = {
                    "round": round_no + 1,
                    "workload": workload,
                    "waiters": parked,
                    "rps": round(result.output.rps),
                    "p99_ms": result.output.latency_ms.get("p99"),
                    "cpu_us_per_request": round(result.cpu_us_per_request.get("total", 0), 1),
                    "ok": result.ok,
                    "failure": result.failure,
                }
                rows.append(row)
                print(orjson.dumps(row).decode(), flush=True)
    return rows


def ratios(rows: list[dict[str, Any]], load_waiters: int) -> dict[str, float]:
    out = {}
    for workload in ("send", "pull"):
        base = [r["rps"] for r in rows if r["workload"] == workload and r["waiters"] == 0]
        parked = [
            r["rps"] for r in rows if r["workload"] == workload and r["waiters"] == load_waiters
        ]
        if base and parked:
            out[workload] = round(statistics.median(parked) / statistics.median(base), 3)
    return out


def markdown(report: dict[str, Any]) -> Iterator[str]:
    yield f"# Long-poll costs ({report['started']})\n\n"
    yield f"Command: `{report['command']}`\n\n"
    yield "| parked waiters | delivery p50 / p99 / max (ms, ack -> answer) | "
    yield "not delivered | idle CPU (% of one core) | bytes per waiter |\n"
    yield "|---|---|---|---|---|\n"
    for r in report["waiting"]:
        d = r.get("ack_to_answer_ms", {})
        yield (
            f"| {r['waiters']:,} | {d.get('p50')} / {d.get('p99')} / {d.get('max')} | "
            f"{r.get('not_delivered_within_5s', '-')} | {r['idle_cpu_percent_of_one_core']} | "
            f"{r['bytes_per_waiter']:,} |\n"
        )
    yield "\nThroughput at c=50 (wrk, rounds alternate):\n\n"
    yield "| round | workload | parked waiters | req/s | p99 ms | CPU µs/request | ok |\n"
    yield "|---|---|---|---|---|---|---|\n"
    for r in report["throughput"]:
        yield (
            f"| {r['round']} | {r['workload']} | {r['waiters']:,} | {r['rps']:,} | "
            f"{r['p99_ms']} | {r['cpu_us_per_request']} | {r['ok']} |\n"
        )
    yield "\nMedian req/s with waiters parked / without: "
    yield ", ".join(f"{k} {v}x" for k, v in report["throughput_ratio"].items()) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.longpoll", description=__doc__)
    parser.add_argument("--waiters", default="0,100,1000,10000")
    parser.add_argument("--probes", type=int, default=300)
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--load-waiters", type=int, default=1000)
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("bench/results"))
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    started = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out = args.out / f"{started}-longpoll"
    out.mkdir(parents=True, exist_ok=True)
    limit = stack.raise_file_limit()
    target = stack.start(out / "logs", None, None)
    try:
        client = target.redis()
        chats = [dataset.workload_chat(i) for i in range(dataset.WORKLOAD_CHATS)]
        dataset.preload(client, [(c, 20) for c in chats], 1)
        client.close()
        counts = [int(c) for c in args.waiters.split(",") if c]
        report: dict[str, Any] = {
            "started": started,
            "command": " ".join(["python -m bench.longpoll", *argv]),
            "open_file_limit": limit,
            "settings": target.env,
            "waiting": asyncio.run(waiting_costs(target, counts, args.probes, args.idle_seconds)),
        }
        report["throughput"] = throughput(target, args.load_waiters, args.duration, args.rounds)
        report["throughput_ratio"] = ratios(report["throughput"], args.load_waiters)
    finally:
        target.stop()
    (out / "results.json").write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    (out / "summary.md").write_text("".join(markdown(report)))
    print(out / "summary.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
