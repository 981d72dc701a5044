"""One measured run: the tool's numbers plus the CPU each server spent on them.

CPU is read from /proc before and after (see procstat), so µs of CPU per
request can be told per process and in total. The load generator's own CPU
comes from getrusage of reaped children (it is the only child that ends
during a run), and whatever else kept the machine busy is reported as
"other" cores: on a shared, noisy machine that says how far to trust a run.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable
from typing import Any

from bench import procstat
from bench.results import RunResult, ToolOutput


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def failure_of(output: ToolOutput) -> str | None:
    """Why a run may not be quoted as throughput, or None if it may."""
    if output.failure is not None:
        return output.failure
    if output.requests <= 0:
        return "no request completed"
    if output.non2xx:
        return f"{output.non2xx} responses were not 2xx"
    socket = {k: v for k, v in output.socket_errors.items() if v}
    if socket:
        return "socket errors: " + ", ".join(f"{k} {v}" for k, v in socket.items())
    return None


def measure(
    name: str,
    group: str,
    connections: int,
    settings: dict[str, Any],
    roles: dict[str, list[int]],
    run: Callable[[], ToolOutput],
) -> RunResult:
    """Run `run` between two CPU snapshots of `roles` (role -> root pids)."""
    before = procstat.snapshot(roles)
    client_before = _children_cpu()
    busy_before, _ = procstat.machine_busy_seconds()
    started = time.monotonic()
    output = run()
    elapsed = time.monotonic() - started
    busy_after, _ = procstat.machine_busy_seconds()
    client_cpu = _children_cpu() - client_before
    after = procstat.snapshot(roles)

    cpu = {role: max(after[role] - before[role], 0.0) for role in roles}
    requests = output.requests
    per_request: dict[str, float] = {}
    client_per_request: float | None = None
    if requests > 0:
        per_request = {role: seconds * 1e6 / requests for role, seconds in cpu.items()}
        if per_request:
            per_request["total"] = sum(per_request.values())
        client_per_request = client_cpu * 1e6 / requests
    other = None
    if elapsed > 0:
        other = max(busy_after - busy_before - sum(cpu.values()) - client_cpu, 0.0) / elapsed
    failure = failure_of(output)
    settings = {**settings, "pids": roles}
    return RunResult(
        name=name,
        group=group,
        connections=connections,
        settings=settings,
        output=output,
        ok=failure is None,
        failure=failure,
        cpu_seconds=cpu,
        cpu_us_per_request=per_request,
        client_cpu_us_per_request=client_per_request,
        other_cpu_cores=other,
    )
