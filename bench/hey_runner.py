"""hey, for the workloads it can express: one fixed request repeated.

hey cannot vary a request, so ``hey-send`` posts one fixed body (one chat)
and ``hey-pull`` reads one chat's first page. Its summary gives p50/p90/p99
but no p99.9.
"""

from __future__ import annotations

import re

from bench.loadgen import GRACE_S, run_tool
from bench.results import ToolOutput

TIMEOUT_S = 5
_RPS = re.compile(r"Requests/sec:\s*([\d.]+)")
_TOTAL = re.compile(r"Total:\s*([\d.]+) secs")
_PCT = re.compile(r"(\d+(?:\.\d+)?)%+ in ([\d.]+) secs")
_STATUS = re.compile(r"\[(\d{3})\]\s+(\d+) responses")
_ERROR = re.compile(r"^\s*\[(\d+)\]\s+(.*)$")


def run_hey(
    url: str,
    connections: int,
    duration: int,
    method: str = "GET",
    body: str | None = None,
) -> ToolOutput:
    argv = ["hey", "-z", f"{duration}s", "-c", str(connections), "-t", str(TIMEOUT_S)]
    if body is not None:
        argv += ["-m", method, "-T", "application/json", "-d", body]
    argv.append(url)
    status, out, err = run_tool(argv, duration + GRACE_S)
    return parse(argv, status, out, err)


def parse(argv: list[str], status: int, out: str, err: str) -> ToolOutput:
    rps, total = _RPS.search(out), _TOTAL.search(out)
    if status != 0 or rps is None or total is None:
        detail = (err or out).strip().splitlines()[-1:] or ["no output"]
        return ToolOutput("hey", argv, 0, 0.0, 0.0, {}, failure=f"hey: {detail[0]}")
    percent = {p: float(s) * 1000 for p, s in _PCT.findall(out)}
    latency: dict[str, float | None] = {
        "p50": percent.get("50"),
        "p90": percent.get("90"),
        "p99": percent.get("99"),
        "p99.9": None,
    }
    by_status = {int(code): int(n) for code, n in _STATUS.findall(out)}
    ok = sum(n for code, n in by_status.items() if 200 <= code < 300)
    non2xx = sum(by_status.values()) - ok
    socket = 0
    if "Error distribution:" in out:
        for line in out.split("Error distribution:", 1)[1].splitlines():
            found = _ERROR.match(line)
            if found:
                socket += int(found.group(1))
    requests = sum(by_status.values()) + socket
    return ToolOutput(
        "hey",
        argv,
        requests,
        float(total.group(1)),
        float(rps.group(1)),
        latency,
        non2xx,
        {"errors": socket},
    )
