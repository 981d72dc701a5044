"""The system under test: started here on free loopback ports, or found at ``--url``.

Started here, it is exactly what production runs (a ``launcher.stack.Stack``:
Redis with AOF fsync every second, gunicorn RPC workers, Sanic front end),
with a fresh Redis whose data lives in a temporary directory. Found at
``--url``, it is only measured: nothing is started or stopped, and CPU is
reported only for the processes that can be found behind the ports.
"""

from __future__ import annotations

import os
import resource
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import redis

from bench import procstat
from launcher.procs import Child, free_port, http_ok, rpc_child
from launcher.stack import ChildFactory, Stack

REPO = Path(__file__).resolve().parent.parent
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def raise_file_limit() -> int:
    """The open-file limit raised to the hard one, for us and the children we start
    (a thousand connections need more than a default soft limit of 1024)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


@dataclass
class Target:
    """What a benchmark measures: where it answers and which processes make it up, by role."""

    url: str
    redis_url: str | None
    roles: dict[str, list[int]] = field(default_factory=dict)  # role -> root pids
    env: dict[str, str] = field(default_factory=dict)  # settings passed to the servers
    mode: str = "started"
    stack: Stack | None = None  # started here, stopped here

    def redis(self) -> redis.Redis:
        if self.redis_url is None:
            raise RuntimeError("no Redis to reach (give --redis-url with --url)")
        return redis.Redis.from_url(self.redis_url, socket_timeout=60)

    def stop(self) -> None:
        """Stop what was started here, front end first, each by its own PID."""
        if self.stack is not None:
            self.stack.stop()


def with_checkout_importable(env: Mapping[str, str]) -> dict[str, str]:
    """`env` with this checkout on PYTHONPATH: bench is not an installed package."""
    path = os.pathsep.join(filter(None, (str(REPO), os.environ.get("PYTHONPATH"))))
    return {**env, "PYTHONPATH": path}


def start(
    logs: Path,
    http_workers: int | None,
    rpc_workers: int | None,
    rpc: ChildFactory = rpc_child,
    name: str = "",
) -> Target:
    """Redis, the RPC service and the front end as children, each ready on return.

    `rpc` makes the RPC service's child (bench/layouts.py passes another);
    `name` tells this stack's logs and data directory from the first one's.
    """
    settings = {"HTTP_ACCESS_LOG": "false"}
    if http_workers is not None:
        settings["HTTP_WORKERS"] = str(http_workers)
    if rpc_workers is not None:
        settings["RPC_WORKERS"] = str(rpc_workers)
    stack = Stack.on_loopback(log_dir=logs, name=name, rpc_factory=rpc, overrides=settings)
    stack.start(timeout=60)
    return Target(stack.base, stack.redis_url, stack.roles(), dict(stack.settings), stack=stack)


def attach(url: str, redis_url: str | None, rpc_url: str | None) -> Target:
    """A running stack: find what processes can be found behind its ports."""
    target = Target(url=url.rstrip("/"), redis_url=redis_url, mode="attached")
    for role, address in (("http", url), ("rpc", rpc_url)):
        if address is None:
            continue
        parts = urlsplit(address)
        if parts.hostname in LOOPBACK and parts.port is not None:
            roots = procstat.server_roots(parts.port)
            if roots:
                target.roles[role] = roots
    if redis_url is not None and urlsplit(redis_url).hostname in LOOPBACK:
        pid = int(target.redis().info("server")["process_id"])
        if Path(f"/proc/{pid}").exists():
            target.roles["redis"] = [pid]
    return target


def start_unbatched(target: Target) -> Child:
    """Another front end like the target's, on the same RPC service, with RPC_BATCH=false."""
    if target.stack is None:
        raise RuntimeError("an unbatched front end needs a stack started here")
    return target.stack.add_http(port=0, label="unbatched", timeout=60, RPC_BATCH="false")


def start_pong(logs: Path, workers: int) -> Child:
    """The bare Sanic ceiling (bench/pong.py) on a free loopback port."""
    port = free_port()
    env = with_checkout_importable(
        {**os.environ, "PONG_PORT": str(port), "PONG_WORKERS": str(workers)}
    )
    url = f"http://127.0.0.1:{port}"
    child = Child(
        "pong",
        [sys.executable, "-m", "bench.pong"],
        http_ok(f"{url}/ping"),
        env,
        logs / "pong.log",
        url,
    )
    return child.start(timeout=60)
