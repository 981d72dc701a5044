"""The whole stack as children of this process: Redis, RPC services, front ends.

The run command, the tests and the benchmark all start it with a Stack, so
each of them runs what production runs, the same way. A Stack starts a Redis
of its own (AOF, fsync every second) unless it is given a ``REDIS_URL``, then
one or more RPC services and one or more front ends, and stops each by its
PID in the reverse order: front ends first, Redis last.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from launcher.procs import Child, free_port, http_child, redis_child, rpc_child

LOOPBACK = "127.0.0.1"

# How a tier's process is made from its settings and its log file (rpc_child, http_child).
ChildFactory = Callable[[Mapping[str, str], Path | None], Child]


@dataclass
class Stack:
    """The processes of one stack and the settings they share.

    Every child gets `environ` with `settings` on top (and its own overrides
    on top of both); `settings` holds only what the stack itself sets, the
    addresses of its tiers among them.
    """

    settings: dict[str, str] = field(default_factory=dict)
    environ: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    log_dir: Path | None = None  # each child's output in a file here; None: in ours
    name: str = ""  # tells its log files from another stack's in the same folder
    redis_port: int | None = None  # a Redis of its own on this port; None: REDIS_URL's
    data_dir: Path | None = None  # its Redis's data; None: a temporary folder
    rpc_factory: ChildFactory = rpc_child  # another build of the RPC service (bench)
    redis: Child | None = field(default=None, init=False)
    rpcs: list[Child] = field(default_factory=list, init=False)
    https: list[Child] = field(default_factory=list, init=False)
    _temporary_data: bool = field(default=False, init=False, repr=False)  # removed on stop

    @classmethod
    def on_loopback(
        cls,
        redis_url: str | None = None,
        *,
        rpc_port: int = 0,
        http_port: int = 0,
        redis_port: int = 0,
        log_dir: Path | None = None,
        name: str = "",
        data_dir: Path | None = None,
        rpc_factory: ChildFactory = rpc_child,
        overrides: Mapping[str, str] | None = None,
    ) -> Stack:
        """A stack to start on 127.0.0.1, on the ports given or free ones (0).

        Without `redis_url` it has a Redis of its own. `overrides` are
        settings of every child, applied after the addresses (so an
        override such as RPC_URL wins).
        """
        rpc_port = rpc_port or free_port()
        http_port = http_port or free_port()
        own_redis = redis_url is None
        if redis_url is None:
            redis_port = redis_port or free_port()
            redis_url = f"redis://{LOOPBACK}:{redis_port}/0"
        settings = {
            "REDIS_URL": redis_url,
            "RPC_HOST": LOOPBACK,
            "RPC_PORT": str(rpc_port),
            "RPC_URL": f"http://{LOOPBACK}:{rpc_port}",
            "HTTP_HOST": LOOPBACK,
            "HTTP_PORT": str(http_port),
            **(overrides or {}),
        }
        return cls(
            settings=settings,
            log_dir=log_dir,
            name=name,
            redis_port=redis_port if own_redis else None,
            data_dir=data_dir,
            rpc_factory=rpc_factory,
        )

    # -- where it answers -------------------------------------------------------

    @property
    def env(self) -> dict[str, str]:
        """What every child of the stack is started with."""
        return {**self.environ, **self.settings}

    @property
    def base(self) -> str:
        """The first front end, e.g. http://127.0.0.1:PORT."""
        return self.http.url

    @property
    def rpc_url(self) -> str:
        """Where the front ends call the RPC service (RPC_URL)."""
        return self.env["RPC_URL"]

    @property
    def redis_url(self) -> str:
        return self.env["REDIS_URL"]

    @property
    def http(self) -> Child:
        """The first front end."""
        return self.https[0]

    @property
    def rpc(self) -> Child:
        """The first RPC service."""
        return self.rpcs[0]

    @property
    def children(self) -> list[Child]:
        """Every child, in the order they start: Redis, RPC services, front ends."""
        return [*([self.redis] if self.redis is not None else []), *self.rpcs, *self.https]

    def roles(self) -> dict[str, list[int]]:
        """Role -> PIDs of the processes started for it (for CPU accounting)."""
        redis = [self.redis] if self.redis is not None else []
        found = {"redis": redis, "rpc": self.rpcs, "http": self.https}
        return {role: [c.pid for c in group] for role, group in found.items() if group}

    # -- starting and stopping --------------------------------------------------

    def start(self, timeout: float = 30.0) -> Stack:
        """Its Redis (if it has one of its own), an RPC service, a front end, each ready in turn.

        Should one not come up, what was started is stopped before the error is raised.
        """
        try:
            if self.redis_port is not None:
                self.start_redis(timeout)
            self.add_rpc(timeout=timeout)
            self.add_http(timeout=timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def start_redis(self, timeout: float = 30.0) -> Child:
        """Its own Redis on `redis_port`, data in `data_dir`; REDIS_URL then names it.

        Once stopped, it starts again on the same port and data.
        """
        if self.redis_port is None:
            raise ValueError("this stack uses the Redis at REDIS_URL")
        if self.data_dir is None:
            self.data_dir = Path(tempfile.mkdtemp(prefix=f"pullchat{self._suffix('')}-"))
            self._temporary_data = True
        if self.redis is None:
            self.redis = redis_child(self.redis_port, self.data_dir, log=self._log("redis", ""))
            self.settings["REDIS_URL"] = self.redis.url
        return self.redis.start(timeout)

    def add_rpc(
        self,
        *,
        port: int | None = None,
        host: str | None = None,
        label: str = "",
        timeout: float = 30.0,
        **overrides: str,
    ) -> Child:
        """One more RPC service at `host`:`port` (port 0: a free one), else at RPC_HOST:RPC_PORT."""
        return self._add("rpc", self.rpcs, self.rpc_factory, host, port, label, timeout, overrides)

    def add_http(
        self, *, port: int | None = None, label: str = "", timeout: float = 30.0, **overrides: str
    ) -> Child:
        """One more front end on `port` (0: a free one), else on HTTP_PORT; its URL is .url."""
        return self._add("http", self.https, http_child, None, port, label, timeout, overrides)

    def stop(self) -> None:
        """Stop every child by its PID, the last started first; remove temporary data.

        Stopping a stopped stack does nothing.
        """
        for child in reversed(self.children):
            child.stop()
        if self._temporary_data and self.data_dir is not None:
            shutil.rmtree(self.data_dir, ignore_errors=True)
            self.data_dir = None
            self._temporary_data = False

    def __enter__(self) -> Stack:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- helpers ----------------------------------------------------------------

    def _add(
        self,
        role: str,
        group: list[Child],
        factory: ChildFactory,
        host: str | None,
        port: int | None,
        label: str,
        timeout: float,
        overrides: Mapping[str, str],
    ) -> Child:
        """Start one more child of a tier with the stack's settings and its own."""
        env = self.env
        tier = role.upper()
        if host is not None:
            env[f"{tier}_HOST"] = host
        if port is not None:
            env[f"{tier}_PORT"] = str(port or free_port(host or LOOPBACK))
        env.update(overrides)
        # No label for a tier's first child, then "2", "3"...: their log files' names.
        label = label or (str(len(group) + 1) if group else "")
        child = factory(env, self._log(role, label))
        group.append(child)  # listed before it starts: whatever interrupts that, stop() finds it
        return child.start(timeout)

    def _suffix(self, label: str) -> str:
        return "".join(f"-{part}" for part in (label, self.name) if part)

    def _log(self, role: str, label: str) -> Path | None:
        if self.log_dir is None:
            return None
        self.log_dir.mkdir(parents=True, exist_ok=True)
        return self.log_dir / f"{role}{self._suffix(label)}.log"
