"""What a run produced, and the machine it ran on, as plain data for results.json."""

from __future__ import annotations

import os
import platform
import subprocess
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson

REPO = Path(__file__).resolve().parent.parent
PERCENTILES = ("p50", "p90", "p99", "p99.9")


@dataclass
class ToolOutput:
    """What one load generator reported; latencies in milliseconds (None: not given)."""

    tool: str
    argv: list[str]
    requests: int
    duration_s: float
    rps: float
    latency_ms: dict[str, float | None]
    non2xx: int = 0
    socket_errors: dict[str, int] = field(default_factory=dict)
    failure: str | None = None  # why the output cannot be trusted, if it cannot

    @property
    def errors(self) -> int:
        return self.non2xx + sum(self.socket_errors.values())


@dataclass
class RunResult:
    """One measured run: a workload (or ceiling) at one concurrency, with its CPU cost."""

    name: str  # send, pull, mixed, pong, hey-send, scale-1000000-forward, redis-send, ...
    group: str  # workload, hey, pong, scale, redis
    connections: int
    settings: dict[str, Any]  # what was asked for: url, script, threads, duration, ...
    output: ToolOutput
    ok: bool
    failure: str | None
    cpu_seconds: dict[str, float]  # per server role, during the run
    cpu_us_per_request: dict[str, float]  # per role and "total" (servers only)
    client_cpu_us_per_request: float | None  # the load generator's own cost
    other_cpu_cores: float | None  # busy cores not ours: noise from the shared machine
    pong_ratio: float | None = None  # req/s over the pong ceiling's at this concurrency

    @property
    def rps(self) -> float | None:
        """Throughput, only when it may be quoted (no error of any kind)."""
        return self.output.rps if self.ok else None

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["rps"] = self.rps
        data["errors"] = self.output.errors
        return data


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _command(argv: list[str]) -> str | None:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10, cwd=REPO)
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = (done.stdout or done.stderr).strip()
    return text.splitlines()[0] if text else None


def machine_info() -> dict[str, Any]:
    """Everything needed to tell two reports apart: hardware, versions, commit."""
    model = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    status = _command(["git", "status", "--porcelain", "--untracked-files=no"])
    return {
        "cpu_count": os.cpu_count(),
        "cpu_model": model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "packages": {
            name: _version(name)
            for name in (
                "sanic",
                "aiohttp",
                "redis",
                "hiredis",
                "orjson",
                "uvloop",
                "gunicorn",
            )
        },
        "wrk": _command(["wrk", "-v"]),
        "redis_benchmark": _command(["redis-benchmark", "--version"]),
        "git_commit": _command(["git", "rev-parse", "HEAD"]),
        "git_dirty": bool(status),
        "loadavg_start": os.getloadavg(),
    }


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Paths inside the checkout are written relative to it: a report names no
    directory of the machine it ran on."""
    raw = orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS)
    path.write_bytes(raw.replace(f"{REPO}{os.sep}".encode(), b""))
