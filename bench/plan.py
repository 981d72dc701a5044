"""The run plan: every step of a benchmark in order, executed under one progress bar.

A Session owns what the steps share (the stack, the pong ceiling, the
results) and always stops what it started, whatever happens in a step.
"""

from __future__ import annotations

import math
import os
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import orjson
from tqdm import tqdm  # type: ignore[import-untyped, unused-ignore]

from bench import dataset, layouts, redis_bench, stack
from bench.cli import (
    BATCHING_CONNECTIONS,
    BATCHING_ROUNDS,
    LAYOUT_CONNECTIONS,
    LAYOUT_ROUNDS,
    WORKLOADS,
    Options,
)
from bench.hey_runner import run_hey
from bench.measure import measure
from bench.redis_bench import Test, run_redis_benchmark, tests
from bench.results import RunResult
from bench.wrk_runner import run_wrk, script
from launcher.procs import Child

SETTLE_S = 0.5  # between runs: let closed connections drain
WARM_UP_S = 1
HEY_CONNECTIONS = 50
SCALE_CONNECTIONS = 50
HEY_TEXT = "a fixed text for hey, which cannot vary its request body"


def _get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as reply:
        data: dict[str, Any] = orjson.loads(reply.read())
        return data


@dataclass(frozen=True)
class Step:
    label: str
    estimate_s: float  # how long it should take: the progress bar's unit
    action: Callable[[], None]


def magnitude(count: int) -> str:
    exponent = round(math.log10(count))
    return f"10^{exponent}" if 10**exponent == count else str(count)


class Session:
    """One benchmark: its plan, its processes, and what it measured."""

    def __init__(self, options: Options, out_dir: Path) -> None:
        self.options = options
        self.out_dir = out_dir
        self.logs = out_dir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.stack: stack.Target | None = None
        self.pong: Child | None = None
        self.unbatched: Child | None = None
        self.sorted_set: stack.Target | None = None  # the earlier layout's stack, to compare
        self.results: list[RunResult] = []
        self.memory: list[dataset.MemoryFigure] = []
        self.scale: dict[int, dataset.LoadedChat] = {}
        self.preload: dict[str, Any] = {}
        self.notes: list[str] = []
        self.warm_up_errors = 0
        self.redis_info: dict[str, Any] = {}
        self.has_redis = options.url is None or options.redis_url is not None

    # -- the plan -------------------------------------------------------------

    def steps(self) -> list[Step]:
        o = self.options
        d = o.duration + SETTLE_S
        label = "attach to " + o.url if o.url else "start Redis, RPC, front end"
        plan = [Step(label, 3, self.start_stack)]
        plan.append(Step("preload workload chats", 3, self.preload_workload_chats))
        compare = self.compares_layouts()
        if compare:
            plan.append(Step("start the sorted-set stack", 3, self.start_sorted_set))
            plan.append(Step("preload its workload chats", 3, self.preload_sorted_set_chats))
        if o.wants("scale") and self.has_redis:
            kinds = [(dataset.STREAM, dataset.LONG_TEXTS), (dataset.STREAM, dataset.SHORT_TEXTS)]
            if compare:
                kinds += [
                    (dataset.SORTED_SET, t) for t in (dataset.LONG_TEXTS, dataset.SHORT_TEXTS)
                ]
            for n in o.scale_sizes:
                for layout, texts in kinds:
                    label = f"preload {magnitude(n)} {layout} {texts[0]}-{texts[1]}"
                    action = partial(self.preload_scale, n, layout, texts)
                    plan.append(Step(label, 1 + n / 60_000, action))
        plan.append(Step("check the API sees the data", 1, self.check_api))
        if self.has_redis:
            plan.append(Step("AOF rewrite", 2, self.settle_store))
        plan.append(Step("warm up", WARM_UP_S + SETTLE_S, self.warm_up_stack))
        for name in WORKLOADS:
            if o.wants(name):
                for c in o.connections:
                    plan.append(Step(f"{name} c={c}", d, partial(self.run_workload, name, c)))
        if o.wants("hey"):
            plan.append(Step("hey-send", d, self.run_hey_send))
            plan.append(Step("hey-pull", d, self.run_hey_pull))
        if o.wants("scale") and self.has_redis:
            for n in o.scale_sizes:
                for variant in ("forward", "reverse", "middle"):
                    plan.append(
                        Step(
                            f"scale {magnitude(n)} {variant}",
                            d,
                            partial(self.run_scale, n, variant),
                        )
                    )
        if o.wants("batching") and o.url is None:
            plan.append(Step("start an unbatched front end", 3, self.start_unbatched))
            for name in ("send", "pull"):
                for n in range(1 if o.smoke else BATCHING_ROUNDS):
                    for batched in (True, False):
                        label = f"{name} {'batched' if batched else 'unbatched'} #{n + 1}"
                        plan.append(Step(label, d, partial(self.run_batching, name, batched)))
            plan.append(Step("stop the unbatched front end", 1, self.stop_unbatched))
        if compare:
            plan.append(
                Step("warm up the sorted-set stack", WARM_UP_S + SETTLE_S, self.warm_up_sorted_set)
            )
            for name in ("send", "pull"):
                for n in range(1 if o.smoke else LAYOUT_ROUNDS):
                    for layout in dataset.LAYOUTS:
                        label = f"{name} {layout} #{n + 1}"
                        plan.append(Step(label, d, partial(self.run_layout, name, layout)))
        if o.wants("pong"):
            plan.append(Step("start pong", 3, self.start_pong))
            plan.append(Step("warm up pong", WARM_UP_S + SETTLE_S, self.warm_up_pong))
            for c in self.pong_levels():
                plan.append(Step(f"pong c={c}", d, partial(self.run_pong, c)))
            plan.append(Step("stop pong", 1, self.stop_pong))
        if o.wants("redis") and self.has_redis:
            estimate = (7 if compare else 4) * o.redis_requests / 30_000
            plan.append(Step("redis-benchmark", estimate, self.run_redis))
        plan.append(Step("stop", 2, self.stop))
        return plan

    def compares_layouts(self) -> bool:
        """Whether the earlier layout is measured too (only for a stack started here)."""
        return self.options.wants("layouts") and self.options.url is None

    def pong_levels(self) -> list[int]:
        """Every workload level, and c=50 for hey, data-scale, batching and layout runs."""
        extra = {HEY_CONNECTIONS, SCALE_CONNECTIONS, BATCHING_CONNECTIONS, LAYOUT_CONNECTIONS}
        return sorted(set(self.options.connections) | extra)

    def execute(self) -> None:
        """Every step in order; whatever happens, stop all that was started."""
        plan = self.steps()
        total = sum(step.estimate_s for step in plan)
        bar = tqdm(
            total=round(total, 1),
            unit="s",
            file=sys.stderr,
            dynamic_ncols=True,
            bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} s est. [{elapsed}<{remaining}]",
        )
        try:
            for step in plan:
                bar.set_description(step.label)
                step.action()
                bar.update(step.estimate_s)
        finally:
            bar.close()
            self.stop()

    def note(self, text: str) -> None:
        self.notes.append(text)
        tqdm.write(f"bench: {text}", file=sys.stderr)

    # -- processes ------------------------------------------------------------

    def start_stack(self) -> None:
        o = self.options
        if o.url is not None:
            self.stack = stack.attach(o.url, o.redis_url, o.rpc_url)
            missing = [r for r in ("http", "rpc", "redis") if r not in self.stack.roles]
            if missing:
                self.note(f"no processes found for {', '.join(missing)}: their CPU is omitted")
        else:
            self.stack = stack.start(self.logs, o.http_workers, o.rpc_workers)
        if self.has_redis:
            client = self.stack.redis()
            try:
                version = client.info("server")["redis_version"]
                config = client.config_get("append*")
            finally:
                client.close()
            self.redis_info = {
                "version": version,
                "appendonly": config.get("appendonly"),
                "appendfsync": config.get("appendfsync"),
            }

    def start_pong(self) -> None:
        self.pong = stack.start_pong(self.logs, os.cpu_count() or 1)

    def stop_pong(self) -> None:
        if self.pong is not None:
            self.pong.stop()
            self.pong = None

    def start_unbatched(self) -> None:
        """A second front end on the same RPC service, with RPC_BATCH=false."""
        self.unbatched = stack.start_unbatched(self._stack())
        self._warm_up("unbatched front end", self.unbatched.url, "mixed")

    def stop_unbatched(self) -> None:
        if self.unbatched is not None:
            self.unbatched.stop()
            self.unbatched = None

    def start_sorted_set(self) -> None:
        o = self.options
        self.sorted_set = layouts.start_sorted_set(self.logs, o.http_workers, o.rpc_workers)

    def _sorted_set(self) -> stack.Target:
        if self.sorted_set is None:
            raise RuntimeError("the sorted-set stack is not up")
        return self.sorted_set

    def warm_up_sorted_set(self) -> None:
        self._warm_up("sorted-set stack", self._sorted_set().url, "mixed")

    def stop(self) -> None:
        self.stop_pong()
        self.stop_unbatched()
        if self.sorted_set is not None:
            self.sorted_set.stop()
            self.sorted_set = None
        if self.stack is not None:
            self.stack.stop()

    def _stack(self) -> stack.Target:
        if self.stack is None:
            raise RuntimeError("the stack is not up")
        return self.stack

    # -- data -----------------------------------------------------------------

    def preload_workload_chats(self) -> None:
        s, o = self._stack(), self.options
        chats = [dataset.workload_chat(i) for i in range(dataset.WORKLOAD_CHATS)]
        started = time.monotonic()
        if self.has_redis:
            client = s.redis()
            try:
                loaded = dataset.preload(client, [(c, o.messages_per_chat) for c in chats], o.seed)
            finally:
                client.close()
            count = sum(item.count for item in loaded)
            how = "redis pipelines"
        else:
            failed = dataset.preload_via_api(s.url, chats, 11, o.seed)
            if failed:
                raise RuntimeError(f"{failed} preload sends failed")
            count, how = 11 * len(chats), "POST /api/send"
        self.preload["workload"] = {
            "chats": len(chats),
            "messages": count,
            "via": how,
            "seconds": round(time.monotonic() - started, 2),
        }

    def preload_sorted_set_chats(self) -> None:
        """The same workload chats, in the earlier layout, into the sorted-set stack's Redis."""
        o = self.options
        chats = [dataset.workload_chat(i) for i in range(dataset.WORKLOAD_CHATS)]
        client = self._sorted_set().redis()
        try:
            dataset.preload(
                client, [(c, o.messages_per_chat) for c in chats], o.seed, dataset.SORTED_SET
            )
        finally:
            client.close()

    def preload_scale(self, count: int, layout: str, texts: tuple[int, int]) -> None:
        """One chat of `count` messages, measured; only today's of 40-80 is kept, for pulls."""
        target = self._stack() if layout == dataset.STREAM else self._sorted_set()
        keep = layout == dataset.STREAM and texts == dataset.LONG_TEXTS
        client = target.redis()
        started = time.monotonic()
        seed = self.options.seed + count
        try:
            loaded, figure = dataset.preload_measured(client, count, seed, layout, texts, keep)
        finally:
            client.close()
        self.memory.append(figure)
        if keep:
            self.scale[count] = loaded
            self.preload[f"scale_{count}"] = {
                "chat": loaded.chat,
                "messages": count,
                "seconds": round(time.monotonic() - started, 2),
            }

    def check_api(self) -> None:
        """Read preloaded pages through the API: names, keys and members must agree."""
        base = self._stack().url
        page = _get_json(f"{base}/api/pull?chat={dataset.workload_chat(0)}&cursor=0&limit=10")
        if len(page["messages"]) != 10 or not page["has_more"]:
            raise RuntimeError(f"a preloaded workload chat reads back wrong: {page}")
        page_of_chat_0 = page["messages"]
        for count, loaded in self.scale.items():
            middle = loaded.send_time(count // 2)
            page = _get_json(f"{base}/api/pull?chat={loaded.chat}&cursor={middle}&limit=10")
            first = page["messages"][0] if page["messages"] else {}
            following = loaded.send_time(count // 2 + 10)
            if first.get("send_time") != middle or page["next_cursor"] != following:
                raise RuntimeError(f"the {count}-message chat reads back wrong: {page}")
        if self.sorted_set is not None:
            url = f"{self.sorted_set.url}/api/pull?chat={dataset.workload_chat(0)}&limit=10"
            texts = [(m["sender"], m["text"]) for m in _get_json(url)["messages"]]
            if texts != [(m["sender"], m["text"]) for m in page_of_chat_0]:
                raise RuntimeError("the sorted-set stack reads its chats back differently")

    def settle_store(self) -> None:
        for target in filter(None, (self.stack, self.sorted_set)):
            client = target.redis()
            try:
                dataset.wait_for_aof_rewrite(client)
            finally:
                client.close()

    # -- runs -----------------------------------------------------------------

    def _wrk(
        self,
        name: str,
        group: str,
        url: str,
        lua: str,
        connections: int,
        roles: dict[str, list[int]],
        extra: dict[str, Any] | None = None,
    ) -> RunResult:
        o = self.options
        time.sleep(SETTLE_S)
        settings = {
            "tool": "wrk",
            "url": url,
            "script": f"bench/wrk/{lua}.lua",
            "threads": min(2, connections),
            "duration_s": o.duration,
            **(extra or {}),
        }
        result = measure(
            name,
            group,
            connections,
            settings,
            roles,
            lambda: run_wrk(url, script(lua), connections, o.duration, o.seed),
        )
        self.results.append(result)
        if not result.ok:
            self.note(f"{name} c={connections} FAILED: {result.failure}")
        return result

    def warm_up_stack(self) -> None:
        """Open the pools of every tier before the first measured run."""
        self._warm_up("stack", self._stack().url, "mixed")

    def warm_up_pong(self) -> None:
        assert self.pong is not None
        self._warm_up("pong", f"{self.pong.url}/ping", "fixed")

    def _warm_up(self, what: str, url: str, lua: str) -> None:
        """A short unmeasured wrk run; its errors are noted, not fatal."""
        time.sleep(SETTLE_S)
        out = run_wrk(url, script(lua), 20, WARM_UP_S, self.options.seed)
        if out.errors or out.failure:
            self.warm_up_errors += out.errors or 1
            self.note(f"warm-up of {what}: {out.failure or f'{out.errors} errors'}")

    def run_workload(self, name: str, connections: int) -> None:
        s = self._stack()
        self._wrk(name, "workload", s.url, name, connections, s.roles)

    def run_batching(self, name: str, batched: bool) -> None:
        """One run of a workload through the batching or the unbatched front end."""
        s = self._stack()
        if batched:
            url, roles = s.url, s.roles
        else:
            assert self.unbatched is not None
            url, roles = self.unbatched.url, {**s.roles, "http": [self.unbatched.pid]}
        label = f"{name} {'batched' if batched else 'unbatched'}"
        extra = {"rpc_batch": batched}
        self._wrk(label, "batching", url, name, BATCHING_CONNECTIONS, roles, extra)

    def run_layout(self, name: str, layout: str) -> None:
        """One run of a workload through today's stack or the sorted-set one."""
        target = self._stack() if layout == dataset.STREAM else self._sorted_set()
        extra = {"layout": layout}
        label = f"{name} {layout}"
        self._wrk(label, "layouts", target.url, name, LAYOUT_CONNECTIONS, target.roles, extra)

    def run_pong(self, connections: int) -> None:
        assert self.pong is not None
        roles = {"pong": [self.pong.pid]}
        self._wrk("pong", "pong", f"{self.pong.url}/ping", "fixed", connections, roles)

    def run_scale(self, count: int, variant: str) -> None:
        s = self._stack()
        loaded = self.scale[count]
        cursor = {
            "forward": 0,
            "reverse": 0,
            "middle": loaded.send_time(count // 2),
        }[variant]
        query = f"chat={loaded.chat}&cursor={cursor}&limit=10"
        if variant == "reverse":
            query += "&reverse=true"
        extra = {"messages": count, "variant": variant, "cursor": cursor}
        name = f"scale-{count}-{variant}"
        url = f"{s.url}/api/pull?{query}"
        self._wrk(name, "scale", url, "fixed", SCALE_CONNECTIONS, s.roles, extra)

    def _hey(self, name: str, url: str, body: str | None) -> None:
        s, o = self._stack(), self.options
        time.sleep(SETTLE_S)
        method = "POST" if body is not None else "GET"
        settings = {"tool": "hey", "url": url, "method": method, "duration_s": o.duration}
        if body is not None:
            settings["body"] = body
        result = measure(
            name,
            "hey",
            HEY_CONNECTIONS,
            settings,
            s.roles,
            lambda: run_hey(url, HEY_CONNECTIONS, o.duration, method, body),
        )
        self.results.append(result)
        if not result.ok:
            self.note(f"{name} FAILED: {result.failure}")

    def run_hey_send(self) -> None:
        chat = dataset.workload_chat(0)
        body = f'{{"chat":"{chat}","sender":"{chat.split(":")[0]}","text":"{HEY_TEXT}"}}'
        self._hey("hey-send", f"{self._stack().url}/api/send", body)

    def run_hey_pull(self) -> None:
        chat = dataset.workload_chat(1)
        self._hey("hey-pull", f"{self._stack().url}/api/pull?chat={chat}&cursor=0&limit=10", None)

    def run_redis(self) -> None:
        """Today's scripts on the stack's Redis; the earlier ones on theirs, each after its peer."""
        o = self.options
        runs: list[tuple[stack.Target, Test]] = []
        for target, layout in ((self.stack, dataset.STREAM), (self.sorted_set, dataset.SORTED_SET)):
            if target is None:
                continue
            client = target.redis()
            try:
                runs += [(target, test) for test in tests(client, layout)]
            finally:
                client.close()
        order = ["redis-ping", "redis-send", "redis-pull", "redis-pull-reverse"]
        runs.sort(key=lambda run: order.index(run[1].name.removesuffix(" (sorted set)")))
        for target, test in runs:
            assert target.redis_url is not None
            roles = {"redis": target.roles["redis"]} if "redis" in target.roles else {}
            self._redis_benchmark(target.redis_url, test, o.redis_requests, roles)

    def _redis_benchmark(
        self, redis_url: str, test: Test, requests: int, roles: dict[str, list[int]]
    ) -> None:
        time.sleep(SETTLE_S)
        settings = {
            "tool": "redis-benchmark",
            "command": " ".join(test.command),
            "requests": requests,
            "pipeline": 1,
        }
        result = measure(
            test.name,
            "redis",
            redis_bench.CONNECTIONS,
            settings,
            roles,
            lambda: run_redis_benchmark(redis_url, test, requests),
        )
        self.results.append(result)
        if not result.ok:
            self.note(f"{test.name} FAILED: {result.failure}")

    # -- after ----------------------------------------------------------------

    def assign_pong_ratios(self) -> None:
        """Each HTTP run's req/s over pong's at the same concurrency (both error-free)."""
        pong = {r.connections: r.rps for r in self.results if r.group == "pong" and r.ok}
        for r in self.results:
            ceiling = pong.get(r.connections)
            if r.group in ("workload", "hey", "scale", "batching", "layouts") and r.rps and ceiling:
                r.pong_ratio = r.rps / ceiling

    def failed(self) -> list[RunResult]:
        return [r for r in self.results if not r.ok]
