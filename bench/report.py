"""summary.md: the results as markdown tables, for people (results.json is for programs).

A run with any non-2xx answer or socket error is shown as FAILED: its
throughput is never printed, only its error count and the reason.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from bench.dataset import MemoryFigure
from bench.results import PERCENTILES, RunResult

ROLE_NAMES = {"http": "front end", "rpc": "RPC", "redis": "Redis", "pong": "pong"}
DASH = "—"


def _num(value: float | None, digits: int = 0) -> str:
    if value is None:
        return DASH
    return f"{value:,.{digits}f}"


def _ms(value: float | None) -> str:
    if value is None:
        return DASH
    return f"{value:.2f}" if value < 100 else f"{value:.0f}"


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]


def _rps(r: RunResult) -> str:
    return _num(r.rps) if r.ok else "**FAILED**"


def _latencies(r: RunResult) -> list[str]:
    if not r.ok:
        return [DASH] * len(PERCENTILES)
    return [_ms(r.output.latency_ms.get(p)) for p in PERCENTILES]


def _cpu(r: RunResult, roles: Sequence[str]) -> list[str]:
    per = r.cpu_us_per_request
    return [_num(per.get(role)) for role in roles]


def _ratio(r: RunResult) -> str:
    return f"{r.pong_ratio:.2f}" if r.pong_ratio is not None else DASH


def _roles(runs: Sequence[RunResult]) -> list[str]:
    present = {role for r in runs for role in r.cpu_us_per_request if role != "total"}
    return [role for role in ROLE_NAMES if role in present]


def _http_table(runs: Sequence[RunResult], label: str) -> list[str]:
    roles = _roles(runs)
    header = [label, "c", "req/s", "x pong", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "errors"]
    header += [f"CPU µs/req {ROLE_NAMES[role]}" for role in roles]
    header += ["CPU µs/req total", "client µs/req", "other cores"]
    rows = []
    for r in runs:
        total = r.cpu_us_per_request.get("total") if roles else None
        rows.append(
            [
                r.name,
                str(r.connections),
                _rps(r),
                _ratio(r),
                *_latencies(r),
                str(r.output.errors),
                *_cpu(r, roles),
                _num(total),
                _num(r.client_cpu_us_per_request),
                _num(r.other_cpu_cores, 2),
            ]
        )
    return _table(header, rows)


def _scale_table(runs: Sequence[RunResult]) -> list[str]:
    header = ["messages", "pull", "cursor", "req/s", "x pong", "p50 ms", "p90 ms", "p99 ms"]
    header += ["p99.9 ms", "errors", "CPU µs/req total", "other cores"]
    rows = []
    for r in runs:
        rows.append(
            [
                f"{r.settings['messages']:,}",
                str(r.settings["variant"]),
                str(r.settings["cursor"]),
                _rps(r),
                _ratio(r),
                *_latencies(r),
                str(r.output.errors),
                _num(r.cpu_us_per_request.get("total")),
                _num(r.other_cpu_cores, 2),
            ]
        )
    return _table(header, rows)


def _redis_table(runs: Sequence[RunResult]) -> list[str]:
    header = ["test", "req/s", "mean ms", "p50 ms", "p99 ms", "errors"]
    header += ["Redis CPU µs/req", "client µs/req", "command"]
    rows = []
    for r in runs:
        lat = r.output.latency_ms
        ok = r.ok
        rows.append(
            [
                r.name,
                _rps(r),
                _ms(lat.get("mean")) if ok else DASH,
                _ms(lat.get("p50")) if ok else DASH,
                _ms(lat.get("p99")) if ok else DASH,
                str(r.output.errors) if ok else "yes",
                _num(r.cpu_us_per_request.get("redis")),
                _num(r.client_cpu_us_per_request),
                "`" + str(r.settings["command"])[:60] + "`",
            ]
        )
    return _table(header, rows)


def _memory_table(figures: Sequence[MemoryFigure]) -> list[str]:
    header = ["layout", "texts", "messages", "encoding", "MEMORY USAGE", "bytes/message"]
    header += ["used_memory Δ/message", "payload bytes/message"]
    rows = []
    order = sorted(figures, key=lambda f: (f.texts != "40-80", f.messages, f.layout))
    for f in order:
        d = f.as_dict()
        rows.append(
            [
                f.layout,
                f.texts,
                f"{f.messages:,}",
                f.encoding,
                f"{f.memory_usage:,}",
                _num(float(d["bytes_per_message"]), 1),
                _num(float(d["used_memory_delta_per_message"]), 1),
                _num(float(d["payload_bytes_per_message"]), 1),
            ]
        )
    return _table(header, rows)


def _mean(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return sum(known) / len(known) if known else None


def _over(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a is not None and b else DASH


def _layout_ratios(runs: Sequence[RunResult]) -> list[str]:
    """Per workload: today's layout over the sorted-set one, means of the alternating rounds."""
    header = ["workload", "req/s stream", "req/s sorted set", "ratio"]
    roles = ["total", "rpc", "redis", "http"]
    for role in roles:
        name = ROLE_NAMES.get(role, role)
        header += [f"CPU µs/req {name} stream", "sorted set", "ratio"]
    rows = []
    for workload in dict.fromkeys(str(r.name).split(" ")[0] for r in runs):
        by = {
            layout: [r for r in runs if r.ok and r.name == f"{workload} {layout}"]
            for layout in ("stream", "sorted-set")
        }
        rps = {k: _mean([r.rps for r in v]) for k, v in by.items()}
        row = [workload, _num(rps["stream"]), _num(rps["sorted-set"])]
        row.append(_over(rps["stream"], rps["sorted-set"]))
        for role in roles:
            cpu = {k: _mean([r.cpu_us_per_request.get(role) for r in v]) for k, v in by.items()}
            row += [_num(cpu["stream"]), _num(cpu["sorted-set"])]
            row.append(_over(cpu["stream"], cpu["sorted-set"]))
        rows.append(row)
    return _table(header, rows)


def _scale_ratios(runs: Sequence[RunResult]) -> list[str]:
    """Each pull variant at the largest chat over the same at the smallest."""
    sizes = sorted({int(r.settings["messages"]) for r in runs})
    if len(sizes) < 2:
        return []
    small, large = sizes[0], sizes[-1]
    lines = []
    for variant in dict.fromkeys(str(r.settings["variant"]) for r in runs):
        pick = {
            n: next(
                (
                    r
                    for r in runs
                    if r.settings["messages"] == n and r.settings["variant"] == variant
                ),
                None,
            )
            for n in (small, large)
        }
        a, b = pick[large], pick[small]
        if a is None or b is None or not (a.ok and b.ok):
            continue
        rps = _over(a.rps, b.rps)
        cpu = _over(a.cpu_us_per_request.get("total"), b.cpu_us_per_request.get("total"))
        lines.append(
            f"- {variant}: {large:,} over {small:,} messages: req/s x{rps}, CPU/req x{cpu}"
        )
    return [*lines, ""] if lines else []


def summary(
    meta: dict[str, Any],
    results: Sequence[RunResult],
    memory: Sequence[MemoryFigure],
    notes: Sequence[str],
) -> str:
    """The whole summary.md."""
    m, stack = meta["machine"], meta["stack"]
    pkgs = ", ".join(f"{k} {v}" for k, v in m["packages"].items() if v)
    redis_info = stack.get("redis") or {}
    store = (
        f"Redis {redis_info['version']}, appendonly {redis_info['appendonly']}, "
        f"appendfsync {redis_info['appendfsync']}"
        if redis_info
        else "Redis not reachable from the benchmark"
    )
    lines = [
        f"# pullchat benchmark {meta['timestamp']}",
        "",
        f"- command: `{meta['command']}`",
        f"- stack: {stack['mode']} at {stack['url']}; front-end workers "
        f"{stack.get('http_workers') or '?'}, RPC workers {stack.get('rpc_workers') or '?'}; "
        + store,
        f"- {meta['options']['duration']} s per run; wrk -t2 (-t1 at c=1), timeout 5 s",
        f"- machine: {m['cpu_count']} x {m['cpu_model']}, Linux {m['kernel']}, "
        f"load average at start {', '.join(f'{v:.2f}' for v in m['loadavg_start'])}",
        f"- Python {m['python']}; {pkgs}; {m['wrk']}",
        f"- commit {m['git_commit']}{' (with uncommitted changes)' if m['git_dirty'] else ''}",
        "",
        "How to read this: bench/README.md. µs/req is CPU time (user + system) of a "
        "process tree divided by the requests of the run; `x pong` is req/s over the bare "
        "Sanic ceiling's at the same concurrency; `other cores` is machine CPU used by "
        "anything but the servers and the load generator during the run (noise).",
        "",
    ]
    groups = {g: [r for r in results if r.group == g] for g in ("workload", "hey", "pong")}
    if groups["workload"]:
        lines += ["## Workloads (wrk)", "", *_http_table(groups["workload"], "workload")]
    if groups["hey"]:
        lines += ["## The same with hey (fixed request, c=50)", ""]
        lines += _http_table(groups["hey"], "run")
    batching = [r for r in results if r.group == "batching"]
    if batching:
        lines += [
            "## Batched vs unbatched RPC calls (c=50, runs alternating)",
            "",
            "The same RPC service and Redis behind two front ends: the stack's own "
            "(`RPC_BATCH=true`, calls of one event-loop tick go as one `/rpc/batch`) "
            "and a second one with `RPC_BATCH=false` (one RPC request per call).",
            "",
            *_http_table(batching, "run"),
        ]
    layout_runs = [r for r in results if r.group == "layouts"]
    if layout_runs:
        lines += [
            "## Stream layout vs the earlier sorted-set layout (c=50, runs alternating)",
            "",
            "Two whole stacks of the same settings, each on a Redis of its own holding the "
            "same preloaded chats in its layout: today's, and one whose RPC service runs "
            "the sorted-set store (`bench/legacy`). Means of the alternating rounds:",
            "",
            *_layout_ratios(layout_runs),
            "Each run:",
            "",
            *_http_table(layout_runs, "run"),
        ]
    lines += ["## Ceilings", ""]
    if groups["pong"]:
        title = f"### Bare Sanic `GET /ping`, {m['cpu_count']} workers (bench/pong.py)"
        lines += [title, "", *_http_table(groups["pong"], "run")]
    redis_runs = [r for r in results if r.group == "redis"]
    if redis_runs:
        title = (
            "### redis-benchmark, the store's own calls: send.lua by EVALSHA, the pull's XRANGE"
            " (-c 50 -P 1, 1000 chats)"
        )
        if any(r.name.endswith("(sorted set)") for r in redis_runs):
            title += "; (sorted set): the earlier layout's, on its stack's Redis"
        lines += [title, "", *_redis_table(redis_runs)]
    scale = [r for r in results if r.group == "scale"]
    if scale:
        lines += ["## Data scale: one chat of N messages, pull limit 10, c=50", ""]
        lines += _scale_table(scale)
        lines += _scale_ratios(scale)
    if memory:
        lines += ["## Redis memory per stored message", ""]
        lines += _memory_table(memory)
    failed = [r for r in results if not r.ok]
    if failed:
        lines += ["## Failed runs (never quoted as throughput)", ""]
        lines += [f"- {r.name} c={r.connections}: {r.failure}" for r in failed] + [""]
    if notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in notes] + [""]
    return "\n".join(lines)
