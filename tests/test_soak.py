"""A bounded soak: mixed load at 200 connections, zero errors, flat memory.

``SOAK_SECONDS`` (default 60) sets the length; the first fifth is warm-up.
The resident memory of each front-end and RPC process may grow by less than
10% after warm-up. Redis is left out of that check, since its memory grows
with the messages the soak stores; its bytes per message are recorded.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from tests.stacks import StackFactory

pytestmark = pytest.mark.slow

SECONDS = int(os.environ.get("SOAK_SECONDS", "60"))
SCRIPT = Path(__file__).parent / "wrk" / "soak.lua"


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def tree(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [pid] + [p for c in children for p in tree(int(c))]


@pytest.mark.timeout(SECONDS + 120)
def test_soak_mixed_200_connections(
    redis_url: str, make_stack: StackFactory, record_property: Callable[[str, object], None]
) -> None:
    """Mixed load for SOAK_SECONDS at c=200: no errors, Python processes' memory flat."""
    wrk = shutil.which("wrk")
    assert wrk, "wrk is required (apt-get install wrk)"
    stack = make_stack(redis_url)
    client = redis.Redis.from_url(redis_url)
    try:
        pids = tree(stack.http.pid) + tree(stack.rpc.pid)
        messages_before = sum(
            int(client.xlen(k)) for k in client.scan_iter("im:{peer*:soak*}", count=1000)
        )
        used_before = int(client.info("memory")["used_memory"])
        samples: list[dict[int, int]] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(2):
                samples.append({p: rss_kib(p) for p in pids})

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        run = subprocess.run(
            [
                wrk,
                "-t2",
                "-c200",
                f"-d{SECONDS}s",
                "--timeout",
                "5s",
                "-s",
                str(SCRIPT),
                stack.base,
            ],
            capture_output=True,
            text=True,
            timeout=SECONDS + 60,
        )
        stop.set()
        sampler.join()
        out = run.stdout
        assert run.returncode == 0, run.stderr
        requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
        non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        socket_errors = re.search(r"Socket errors: (.*)", out)
        assert requests > SECONDS * 100, out
        assert non_2xx is None, out
        assert socket_errors is None, out

        warm = samples[len(samples) // 5]
        last = samples[-1]
        growth = {p: (last[p] - warm[p]) / warm[p] for p in pids if warm.get(p)}
        worst = max(growth.values())
        messages_after = sum(
            int(client.xlen(k)) for k in client.scan_iter("im:{peer*:soak*}", count=1000)
        )
        stored = messages_after - messages_before
        used_after = int(client.info("memory")["used_memory"])
        record_property("requests", requests)
        record_property("req/s", round(requests / SECONDS))
        record_property("errors", 0)
        record_property("worst RSS growth after warm-up %", round(worst * 100, 1))
        record_property("RSS MiB per process", {p: round(last[p] / 1024, 1) for p in pids})
        record_property(
            "Redis bytes per stored message", round((used_after - used_before) / stored)
        )
        assert worst < 0.10, f"memory grew after warm-up: {growth}"
    finally:
        client.close()
