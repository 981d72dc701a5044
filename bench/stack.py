"""The system under test: started here on free loopback ports, or found at ``--url``.

Started here, it is exactly what production runs (``launcher.procs``: Redis
with AOF fsync every second, gunicorn RPC workers, Sanic front end), with a
fresh Redis whose data lives in a temporary directory. Found at ``--url``, it
is only measured: nothing is started or stopped, and CPU is reported only for
the processes that can be found behind the ports.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import redis

from bench import procstat
from launcher.procs import Child, free_port, http_child, http_ok, redis_child, rpc_child

REPO = Path(__file__).resolve().parent.parent
LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass
class Stack:
    """Where the stack answers and which processes make it up, by role."""

    url: str
    redis_url: str | None
    roles: dict[str, list[int]] = field(default_factory=dict)  # role -> root pids
    env: dict[str, str] = field(default_factory=dict)  # settings passed to the servers
    children: list[Child] = field(default_factory=list)  # started here, stopped here
    data_dir: Path | None = None
    mode: str = "started"

    def redis(self) -> redis.Redis:
        if self.redis_url is None:
            raise RuntimeError("no Redis to reach (give --redis-url with --url)")
        return redis.Redis.from_url(self.redis_url, socket_timeout=60)

    def stop(self) -> None:
        """Stop what was started here, front end first, each by its own PID."""
        while self.children:
            self.children.pop().stop()
        if self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.data_dir = None


RpcChild = Callable[[Mapping[str, str], Path], Child]


def start(
    logs: Path,
    http_workers: int | None,
    rpc_workers: int | None,
    rpc: RpcChild = rpc_child,
    name: str = "",
) -> Stack:
    """Redis, the RPC service and the front end as children, each ready on return.

    `rpc` makes the RPC service's child (bench/layouts.py passes another);
    `name` tells this stack's logs and data directory from the first one's.
    """
    suffix = f"-{name}" if name else ""
    data_dir = Path(tempfile.mkdtemp(prefix=f"pullchat-bench{suffix}-"))
    redis_port, rpc_port, http_port = free_port(), free_port(), free_port()
    env = {
        "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "RPC_HOST": "127.0.0.1",
        "RPC_PORT": str(rpc_port),
        "RPC_URL": f"http://127.0.0.1:{rpc_port}",
        "HTTP_HOST": "127.0.0.1",
        "HTTP_PORT": str(http_port),
        "HTTP_ACCESS_LOG": "false",
    }
    if http_workers is not None:
        env["HTTP_WORKERS"] = str(http_workers)
    if rpc_workers is not None:
        env["RPC_WORKERS"] = str(rpc_workers)
    stack = Stack(
        url=f"http://127.0.0.1:{http_port}",
        redis_url=env["REDIS_URL"],
        env=env,
        data_dir=data_dir,
    )
    child_env = {**os.environ, **env}
    try:
        for child in (
            redis_child(redis_port, data_dir / "redis", log=logs / f"redis{suffix}.log"),
            rpc(child_env, logs / f"rpc{suffix}.log"),
            http_child(child_env, log=logs / f"http{suffix}.log"),
        ):
            stack.children.append(child)
            child.start(timeout=60)
    except BaseException:
        stack.stop()
        raise
    for role, child in zip(("redis", "rpc", "http"), stack.children, strict=True):
        stack.roles[role] = [child.pid]
    return stack


def attach(url: str, redis_url: str | None, rpc_url: str | None) -> Stack:
    """A running stack: find what processes can be found behind its ports."""
    stack = Stack(url=url.rstrip("/"), redis_url=redis_url, mode="attached")
    for role, address in (("http", url), ("rpc", rpc_url)):
        if address is None:
            continue
        parts = urlsplit(address)
        if parts.hostname in LOOPBACK and parts.port is not None:
            roots = procstat.server_roots(parts.port)
            if roots:
                stack.roles[role] = roots
    if redis_url is not None and urlsplit(redis_url).hostname in LOOPBACK:
        pid = int(stack.redis().info("server")["process_id"])
        if Path(f"/proc/{pid}").exists():
            stack.roles["redis"] = [pid]
    return stack


def start_unbatched(stack: Stack, logs: Path) -> tuple[Child, str]:
    """Another front end like the stack's, on the same RPC service, with RPC_BATCH=false."""
    port = free_port()
    env = {**os.environ, **stack.env, "HTTP_PORT": str(port), "RPC_BATCH": "false"}
    child = http_child(env, log=logs / "http-unbatched.log")
    child.start(timeout=60)
    return child, f"http://127.0.0.1:{port}"


def start_pong(logs: Path, workers: int) -> tuple[Child, str]:
    """The bare Sanic ceiling (bench/pong.py) on a free loopback port."""
    port = free_port()
    env = {**os.environ, "PONG_PORT": str(port), "PONG_WORKERS": str(workers)}
    # bench is not an installed package: let the child import it from this checkout.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(REPO), os.environ.get("PYTHONPATH"))))
    url = f"http://127.0.0.1:{port}"
    child = Child(
        "pong",
        [sys.executable, "-m", "bench.pong"],
        http_ok(f"{url}/ping"),
        env,
        logs / "pong.log",
    )
    child.start(timeout=60)
    return child, url
