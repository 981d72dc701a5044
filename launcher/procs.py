"""Child processes that are started, waited for until they answer, and stopped by their PID.

The pieces of the stack (launcher/stack.py puts them together): Redis, the
RPC service and the front end, each a Child with a readiness probe.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO

import redis

PR_SET_PDEATHSIG = 1


class StartError(RuntimeError):
    """A process did not come up in time, or died while starting."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def _die_with_parent() -> None:
    # Linux: the child gets SIGTERM if the process that started it dies.
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


REDIS_MAJOR_MIN = 7  # sharded pub/sub (SPUBLISH), which the store's scripts use


def redis_major(binary: str) -> int:
    """The major version of a ``redis-server`` binary (0 if it cannot tell)."""
    try:
        out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return 0
    found = re.search(r"v=(\d+)\.", out.stdout)
    return int(found.group(1)) if found else 0


def _apt_install_redis() -> None:
    """Debian's redis-server (Redis 7 on Debian 12), when run as root on a Debian machine."""
    print("pullchat: installing Redis with apt-get (redis-server)", file=sys.stderr, flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for argv in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "redis-server"],
    ):
        subprocess.run(argv, check=True, env=env, stdout=subprocess.DEVNULL)


@functools.cache
def redis_server_binary() -> str:
    """A ``redis-server`` of Redis 7 or later: the one on PATH, else Debian's, installed now.

    Installing needs root and apt-get; without them, say what is needed.
    """
    found = shutil.which("redis-server")
    if found and redis_major(found) >= REDIS_MAJOR_MIN:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        try:
            _apt_install_redis()
        except (OSError, subprocess.CalledProcessError) as exc:
            raise StartError(f"could not install redis-server with apt-get: {exc}") from None
        found = shutil.which("redis-server") or "/usr/bin/redis-server"
        if redis_major(found) >= REDIS_MAJOR_MIN:
            return found
    have = f"{found} is Redis {redis_major(found)}" if found else "no redis-server on PATH"
    raise StartError(
        f"pullchat needs Redis {REDIS_MAJOR_MIN} or later ({have}): install it"
        " (Debian 12: apt-get install redis-server), or set REDIS_URL to a Redis 7"
    )


class Child:
    """One child process with a readiness probe; started again by another start()."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        ready: Callable[[], bool],
        env: Mapping[str, str] | None = None,
        log: Path | None = None,
        url: str = "",
    ) -> None:
        self.name = name
        self.argv = argv
        self.ready = ready
        self.env = dict(os.environ if env is None else env)
        self.log = log  # output goes here (appended), else to our own stdout
        self.url = url  # where it answers once ready
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 30.0) -> Child:
        """Start it (again, after a stop) and wait until it is ready; StartError if not."""
        if self.alive():
            raise StartError(f"{self.name} is running already")
        self._close_log()  # left open by a run that ended without stop()
        if self.log is not None:
            self._log_file = self.log.open("ab")
        self.proc = subprocess.Popen(
            self.argv,
            env=self.env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT if self._log_file is not None else None,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise StartError(
                        f"{self.name} exited with {self.proc.returncode} while starting"
                    )
                if self.ready():
                    return self
                time.sleep(0.05)
        except BaseException:
            # Interrupted while waiting (a signal, Ctrl-C): not left running.
            self.stop()
            raise
        self.stop()
        raise StartError(f"{self.name} did not become ready within {timeout:g} s")

    def _kill_group(self) -> None:
        # The child leads its own process group (start_new_session).
        assert self.proc is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            assert self.proc is not None
            self.proc.send_signal(sig)

    def stop(self, timeout: float = 15.0) -> int | None:
        """SIGTERM, then SIGKILL after `timeout`; returns the exit status.

        Whatever of its process group outlives the child (a helper process
        that lost its parent) is killed: nobody is left to stop it.
        """
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._kill_group()
                self.proc.wait()
            self._kill_group()
        self._close_log()
        return self.proc.returncode

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


def http_ok(url: str, also: tuple[int, ...] = ()) -> Callable[[], bool]:
    """A probe that is true once `url` answers 200 (or one of the statuses `also`)."""

    def probe() -> bool:
        try:
            with urllib.request.urlopen(url, timeout=1) as resp:
                return bool(resp.status == 200)
        except urllib.error.HTTPError as exc:
            return exc.code in also
        except (urllib.error.URLError, OSError):
            return False

    return probe


def redis_ping(url: str) -> Callable[[], bool]:
    def probe() -> bool:
        try:
            client = redis.Redis.from_url(url, socket_timeout=1, socket_connect_timeout=1)
            try:
                return bool(client.ping())
            finally:
                client.close()
        except redis.RedisError:
            return False

    return probe


def redis_child(
    port: int,
    data_dir: Path,
    log: Path | None = None,
    appendonly: bool = True,
    password: str | None = None,
) -> Child:
    """A Redis on loopback keeping its data in `data_dir` (AOF, fsync every second)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = [
        redis_server_binary(),
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--dir", str(data_dir),
        "--appendonly", "yes" if appendonly else "no",
        "--appendfsync", "everysec",
        "--save", "",
        "--daemonize", "no",
        "--loglevel", "warning",
    ]  # fmt: skip
    if password is not None:
        argv += ["--requirepass", password]
    auth = f":{password}@" if password is not None else ""
    url = f"redis://{auth}127.0.0.1:{port}/0"
    return Child("redis", argv, redis_ping(url), log=log, url=url)


DEFAULT_PORTS = {"RPC": "8888", "HTTP": "8080"}


def _tier_child(
    env: Mapping[str, str],
    log: Path | None,
    name: str,
    argv: list[str] | None,
    tier: str,
    probe: str,
    also: tuple[int, ...] = (),
) -> Child:
    """A tier where <tier>_HOST and <tier>_PORT say, ready once `probe` answers.

    One listening on every address is reached on loopback; `argv` runs
    another build of the tier.
    """
    host = env.get(f"{tier}_HOST") or "127.0.0.1"
    port = env.get(f"{tier}_PORT") or DEFAULT_PORTS[tier]
    url = f"http://{'127.0.0.1' if host == '0.0.0.0' else host}:{port}"
    module = "rpc_srv" if tier == "RPC" else "http_srv"
    ready = http_ok(f"{url}{probe}", also)
    return Child(name, argv or [sys.executable, "-m", module], ready, env, log, url)


def rpc_child(
    env: Mapping[str, str],
    log: Path | None = None,
    name: str = "rpc",
    argv: list[str] | None = None,
) -> Child:
    """The RPC service; up once /health answers, 503 too (it names a store that is down)."""
    return _tier_child(env, log, name, argv, "RPC", "/health", also=(503,))


def http_child(
    env: Mapping[str, str],
    log: Path | None = None,
    name: str = "http",
    argv: list[str] | None = None,
) -> Child:
    """The front end; up once /ping answers."""
    return _tier_child(env, log, name, argv, "HTTP", "/ping")
