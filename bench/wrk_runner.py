"""wrk with one of the Lua scripts of bench/wrk, parsed from its done() JSON line."""

from __future__ import annotations

import re
from pathlib import Path

import orjson

from bench.loadgen import GRACE_S, run_tool
from bench.results import ToolOutput

SCRIPTS = Path(__file__).resolve().parent / "wrk"
THREADS = 2
TIMEOUT_S = 5  # a reply slower than this is a socket error (timeout), not a latency
_NON2XX = re.compile(r"Non-2xx or 3xx responses:\s*(\d+)")


def script(name: str) -> Path:
    return SCRIPTS / f"{name}.lua"


def run_wrk(
    url: str, script_path: Path, connections: int, duration: int, seed: int = 1
) -> ToolOutput:
    """One wrk run; -t2, or -t1 at one connection (wrk needs connections >= threads)."""
    threads = min(THREADS, connections)
    argv = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration}s",
        f"--timeout={TIMEOUT_S}s",
        "-s",
        str(script_path),
        url,
        "--",
        str(seed),
    ]
    status, out, err = run_tool(argv, duration + GRACE_S)
    return parse(argv, status, out, err)


def parse(argv: list[str], status: int, out: str, err: str) -> ToolOutput:
    """The done() line; wrk's own "Non-2xx" line is cross-checked against it."""
    line = next((ln for ln in out.splitlines() if ln.startswith("BENCH_RESULT ")), None)
    if status != 0 or line is None:
        detail = (err or out).strip().splitlines()[-1:] or ["no output"]
        return ToolOutput("wrk", argv, 0, 0.0, 0.0, {}, failure=f"wrk: {detail[0]}")
    data = orjson.loads(line.removeprefix("BENCH_RESULT "))
    duration_s = data["duration_us"] / 1e6
    requests = int(data["requests"])
    printed = _NON2XX.search(out)
    non2xx = max(int(data["non2xx"]), int(printed.group(1)) if printed else 0)
    latency: dict[str, float | None] = {
        "p50": data["p50_us"] / 1000,
        "p90": data["p90_us"] / 1000,
        "p99": data["p99_us"] / 1000,
        "p99.9": data["p99.9_us"] / 1000,
        "mean": data["mean_us"] / 1000,
        "max": data["max_us"] / 1000,
    }
    errors = {k: int(data[k]) for k in ("connect", "read", "write", "timeout")}
    rps = requests / duration_s if duration_s > 0 else 0.0
    return ToolOutput("wrk", argv, requests, duration_s, rps, latency, non2xx, errors)
