"""The container setup (Dockerfile, .dockerignore, docker-compose.yml), checked without Docker.

tests_docker/ runs the stack on a real engine with both Compose versions (in
.ci/run). What this module adds, on every `make test` and without an engine: the
files' structure and defaults, the commands' failure paths that the engine test
does not provoke (a healthcheck against a service whose Redis is down or that has
stopped, a stop within `stop_grace_period`, the cluster bootstrap on nodes that
came back at other addresses, are missing, or are not empty), and the image's
dependency and install steps.
"""

from __future__ import annotations

import configparser
import functools
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
import redis
import yaml
from packaging.requirements import Requirement

from http_srv.settings import Settings as HttpSettings
from launcher.procs import Child, free_port, http_child, redis_ping, redis_server_binary, rpc_child
from rpc_srv.settings import Settings as RpcSettings

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("contract", "http_srv", "rpc_srv", "launcher")  # what the image installs
BIN = Path(sys.executable).parent  # where pip put this interpreter's console scripts
APP_SERVICES = ("rpc-server", "http-server", "rpc-server-cluster", "http-server-cluster")
DEFAULT_SERVICES = ("redis", "rpc-server", "http-server")
CLUSTER_NODES = ("redis-node-1", "redis-node-2", "redis-node-3")
VAR = re.compile(r"\$\{(?P<name>\w+)(?:(?P<op>:?-)(?P<default>[^}]*))?\}")


# --- reading the files -------------------------------------------------------------------


@functools.cache
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text("utf-8"))
    return data


def service(name: str) -> dict[str, Any]:
    svc: dict[str, Any] = compose()["services"][name]
    return svc


def interpolate(value: str, env: Mapping[str, str] | None = None) -> str:
    """What Compose makes of `value`: ${VAR}, ${VAR:-default}, ${VAR-default}, $$."""
    env = env or {}

    def one(m: re.Match[str]) -> str:
        name, op, default = m["name"], m["op"], m["default"] or ""
        if op == ":-":
            return env.get(name) or default
        if op == "-":
            return env.get(name, default)
        return env.get(name, "")

    return VAR.sub(one, value).replace("$$", "$")


def service_env(name: str, **overrides: str) -> dict[str, str]:
    """The environment compose gives a service's container (defaults taken), plus overrides."""
    env = {k: interpolate(str(v)) for k, v in (service(name).get("environment") or {}).items()}
    env.update(overrides)
    return env


def duration(text: str) -> float:
    """Seconds in a Compose duration such as 1m30s or 15s."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", text)
    assert parts and "".join(n + u for n, u in parts) == text, text
    return sum(float(n) * units[u] for n, u in parts)


@functools.cache
def readme_defaults() -> dict[str, str]:
    """Variable -> default, from README.md's configuration table."""
    text = (ROOT / "README.md").read_text("utf-8")
    rows = re.findall(r"^\| `(\w+)` \| [^|]+ \| `([^`]*)` \|", text, re.M)
    assert len(rows) > 20, "README's configuration table not found"
    return dict(rows)


@functools.cache
def settings_defaults() -> dict[str, Any]:
    """Variable -> typed default, from both tiers' settings."""
    found: dict[str, Any] = {}
    for cls in (HttpSettings, RpcSettings):
        for f in fields(cls):
            found[f.metadata["env"]] = f.default
    return found


def setup_cfg() -> configparser.ConfigParser:
    cfg = configparser.ConfigParser(interpolation=None)
    cfg.read(ROOT / "setup.cfg", encoding="utf-8")
    return cfg


def console_scripts() -> dict[str, str]:
    raw = setup_cfg()["options.entry_points"]["console_scripts"]
    pairs = (line.split("=", 1) for line in raw.strip().splitlines())
    return {name.strip(): target.strip() for name, target in pairs}


def install_requires_by_text() -> list[str]:
    """install_requires read line by line, not with configparser like the Dockerfile."""
    lines = (ROOT / "setup.cfg").read_text("utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if re.match(r"install_requires\s*=", line))
    found = []
    for line in lines[start + 1 :]:
        if line.strip() and not line[0].isspace():
            break
        if line.strip() and not line.strip().startswith("#"):
            found.append(line.strip())
    return found


@dataclass
class Instruction:
    keyword: str
    args: str


@functools.cache
def dockerfile() -> tuple[Instruction, ...]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    found, pending = [], ""
    for raw in (ROOT / "Dockerfile").read_text("utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        keyword, _, args = line.partition(" ")
        found.append(Instruction(keyword.upper(), args.strip()))
    assert not pending, "Dockerfile ends in a continuation"
    return tuple(found)


def exec_form(args: str) -> list[str]:
    parsed = orjson.loads(args) if args.startswith("[") else shlex.split(args)
    assert isinstance(parsed, list)
    return [str(a) for a in parsed]


def ignore_rules() -> list[tuple[bool, re.Pattern[str]]]:
    """.dockerignore as (re-include?, regex), in order; Docker's pattern rules."""
    rules = []
    for raw in (ROOT / ".dockerignore").read_text("utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!").strip("/"))
        out, i = "", 0
        while i < len(pattern):
            if pattern.startswith("**/", i):
                out, i = out + "(?:.*/)?", i + 3
            elif pattern.startswith("**", i):
                out, i = out + ".*", i + 2
            elif pattern[i] == "*":
                out, i = out + "[^/]*", i + 1
            elif pattern[i] == "?":
                out, i = out + "[^/]", i + 1
            elif pattern[i] == "[":
                end = pattern.index("]", i)
                out, i = out + "[" + pattern[i + 1 : end].replace("!", "^", 1) + "]", end + 1
            else:
                out, i = out + re.escape(pattern[i]), i + 1
        rules.append((negate, re.compile(out)))
    return rules


def ignored(path: str) -> bool:
    """Whether Docker leaves `path` (relative, with /) out of the build context."""
    prefixes = ["/".join(path.split("/")[: n + 1]) for n in range(path.count("/") + 1)]
    result = False
    for negate, rx in ignore_rules():
        if any(rx.fullmatch(p) for p in prefixes):
            result = not negate
    return result


def build_context() -> set[str]:
    """The files `docker build .` would send, by .dockerignore."""
    reincluded = [p for p in (ROOT / ".dockerignore").read_text("utf-8").split() if p[0] == "!"]
    found: set[str] = set()
    for top, dirs, files in os.walk(ROOT):
        rel = Path(top).relative_to(ROOT).as_posix()
        rel = "" if rel == "." else rel + "/"
        # Skip a left-out folder unless a "!" pattern could reach inside it.
        dirs[:] = [
            d
            for d in dirs
            if not ignored(rel + d) or any(p[1:].startswith(rel + d + "/") for p in reincluded)
        ]
        found.update(rel + f for f in files if not ignored(rel + f))
    return found


# --- running the containers' commands on loopback ----------------------------------------


def run(
    argv: list[str], env: Mapping[str, str] | None = None, **kw: Any
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        env=dict(os.environ if env is None else env),
        capture_output=True,
        text=True,
        timeout=kw.pop("timeout", 60),
        check=False,
        **kw,
    )


def run_healthcheck(name: str, env: Mapping[str, str], redis_port: int | None = None) -> int:
    """Run service `name`'s healthcheck test here: python is ours, 6379 is `redis_port`."""
    test = list(service(name)["healthcheck"]["test"])
    full_env = dict(os.environ, **env)
    if test[0] == "CMD":
        argv = test[1:]
        assert argv[0] == "python", "the slim image has python, not curl or wget"
        return run([sys.executable, *argv[1:]], full_env).returncode
    assert test[0] == "CMD-SHELL" and len(test) == 2, test
    command = test[1]
    assert redis_port is not None and command.count("-p 6379") == 1, command
    command = command.replace("-p 6379", f"-p {redis_port}")
    return run(["sh", "-c", command], full_env).returncode


@functools.cache
def redis_bin_dir(minimum: int = 7) -> Path:
    """A folder with redis-server and redis-cli of at least version `minimum` (the image's 7)."""
    candidates = [Path(redis_server_binary()).parent]
    candidates += [Path(p) for p in ("/usr/bin", "/usr/local/bin")]
    for folder in candidates:
        server, cli = folder / "redis-server", folder / "redis-cli"
        if server.exists() and cli.exists():
            version = run([str(server), "--version"]).stdout
            major = re.search(r"v=(\d+)\.", version)
            if major and int(major[1]) >= minimum:
                return folder
    pytest.fail(f"needs redis-server and redis-cli >= {minimum} (Debian's; .ci/run installs them)")


def redis_argv(command: list[str], host: str, port: int, data: Path, **replace: str) -> list[str]:
    """A compose Redis `command` on loopback: our binary, address and folder."""
    assert command[0] == "redis-server", command
    args = [replace.get(a, a) for a in command[1:]]
    binaries = redis_bin_dir(7 if "--cluster-enabled" in args else 6)
    local = ["--port", str(port), "--bind", host, "--dir", str(data), "--daemonize", "no"]
    return [str(binaries / "redis-server"), *args, *local]


def start_redis(
    command: list[str],
    tmp: Path,
    *extra: str,
    host: str = "127.0.0.1",
    port: int = 0,
    **replace: str,
) -> tuple[Child, int]:
    port = port or free_port()
    tmp.mkdir(parents=True, exist_ok=True)
    argv = redis_argv(command, host, port, tmp, **replace) + list(extra)
    child = Child("redis", argv, redis_ping(f"redis://{host}:{port}/0"), log=tmp / "log")
    return child.start(), port


def console_child(name: str, command: str, env: Mapping[str, str], log: Path) -> Child:
    """Service `name`'s console command, started as the container starts it."""
    script = BIN / command
    assert script.exists(), f"{script}: console script not installed (pip install -e .)"
    # Ready as the run command's children are: the RPC service once /health
    # answers (503 too, while Redis is down), the front end once /ping does.
    tier = rpc_child if command == "pullchat-rpc" else http_child
    return tier(dict(os.environ, **env), log, name=name, argv=[str(script)])


def stop_timed(child: Child, grace: float) -> tuple[int | None, float]:
    started = time.monotonic()
    status = child.stop(timeout=grace)
    return status, time.monotonic() - started


@dataclass
class Running:
    child: Child
    env: dict[str, str]


def start_service(name: str, tmp_path_factory: pytest.TempPathFactory, **overrides: str) -> Running:
    """Service `name`'s console command with its compose environment plus `overrides`."""
    env = service_env(name, **overrides)
    log = tmp_path_factory.mktemp("compose") / f"{name}.log"
    return Running(console_child(name, service(name)["command"][0], env, log).start(), env)


@pytest.fixture(scope="module")
def rpc_server(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """`pullchat-rpc` with rpc-server's compose environment, host and port on loopback."""
    running = start_service(
        "rpc-server",
        tmp_path_factory,
        RPC_HOST="127.0.0.1",
        RPC_PORT=str(free_port()),
        REDIS_URL=redis_url,
    )
    yield running
    running.child.stop()


# --- the Dockerfile and .dockerignore ----------------------------------------------------


def dockerfile_base_default() -> str:
    """The default of the Dockerfile's PYTHON_IMAGE argument, declared before FROM."""
    steps = dockerfile()
    (first_from,) = [i for i, s in enumerate(steps) if s.keyword == "FROM"]
    args = [s.args for s in steps[:first_from] if s.keyword == "ARG"]
    assert args and args[0].startswith("PYTHON_IMAGE="), args
    return args[0].split("=", 1)[1]


def test_dockerfile_base_user_and_environment() -> None:
    """One stage on PYTHON_IMAGE (python:3.11-slim), unbuffered output, a non-root user."""
    steps = dockerfile()
    assert [s.args for s in steps if s.keyword == "FROM"] == ["${PYTHON_IMAGE}"]
    assert dockerfile_base_default() == "python:3.11-slim"
    env = dict(
        token.split("=", 1) for s in steps if s.keyword == "ENV" for token in shlex.split(s.args)
    )
    assert env.get("PYTHONUNBUFFERED") == "1"
    users = [i for i, s in enumerate(steps) if s.keyword == "USER"]
    assert users, "no USER: the containers would run as root"
    user = steps[users[-1]].args.split(":")[0]
    assert user not in ("root", "0")
    # The user is made before it is used, and nothing is installed after the switch.
    made = [s.args for s in steps[: users[-1]] if s.keyword == "RUN" and "useradd" in s.args]
    assert any(re.search(rf"--uid {user}\b|\b{user}$", r) for r in made), made
    assert not [s for s in steps[users[-1] :] if s.keyword == "RUN"]


def dependency_step() -> tuple[int, Instruction]:
    found = [
        (i, s)
        for i, s in enumerate(dockerfile())
        if s.keyword == "RUN" and "pip install -r" in s.args
    ]
    assert len(found) == 1, found
    return found[0]


def test_dependencies_are_installed_before_the_source_is_copied() -> None:
    """Only setup.cfg reaches the dependency layer, so a source change keeps that layer cached."""
    steps = dockerfile()
    deps, _ = dependency_step()
    copies = [(i, exec_form(s.args)) for i, s in enumerate(steps) if s.keyword == "COPY"]
    before = [srcs[:-1] for i, srcs in copies if i < deps]
    assert before == [["setup.cfg"]], before
    source = [i for i, srcs in copies if i > deps]
    assert source, "the source is never copied"
    install = [
        i for i, s in enumerate(steps) if s.keyword == "RUN" and "pip install --no-deps ." in s.args
    ]
    assert install and install[0] > source[0]
    # No dev or bench extras, no editable install.
    for s in steps:
        if s.keyword == "RUN" and "pip install" in s.args:
            assert not re.search(r"\.\[|pullchat\[| -e ", s.args), s.args


def test_dependency_snippet_prints_install_requires(tmp_path: Path) -> None:
    """The Dockerfile's extraction, run beside a lone setup.cfg, prints install_requires exactly."""
    _, step = dependency_step()
    first, *rest = (part.strip() for part in step.args.split("&&"))
    argv = shlex.split(first)
    assert argv[:2] == ["python", "-c"] and argv[3] == ">", argv
    snippet, target = argv[2], argv[4]
    assert any(shlex.split(part)[:4] == ["pip", "install", "-r", target] for part in rest), rest
    shutil.copy(ROOT / "setup.cfg", tmp_path / "setup.cfg")
    done = run([sys.executable, "-c", snippet], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    printed = done.stdout.splitlines()
    expected = install_requires_by_text()
    assert printed == expected
    assert len(expected) >= 5
    for line in printed:
        Requirement(line)  # a valid requirement line for pip -r


def test_dockerignore_keeps_the_context_to_what_the_image_needs() -> None:
    """The packages and their metadata go in; repository, caches, data, tests and bench stay out."""
    context = build_context()
    assert {"setup.cfg", "pyproject.toml", "README.md"} <= context
    for package in PACKAGES:
        wanted = {
            p.relative_to(ROOT).as_posix()
            for p in (ROOT / package).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts
        }
        assert wanted and wanted <= context, sorted(wanted - context)
    tops = {p.split("/")[0] for p in context}
    assert tops == {"setup.cfg", "pyproject.toml", "README.md", *PACKAGES}
    for path in (
        ".git/HEAD",
        ".venv/bin/python",
        "data/redis/appendonly.aof",
        "tests/test_e2e.py",
        "bench/results/latest.json",
        "rpc_srv/__pycache__/app.cpython-311.pyc",
        "http_srv/app.pyc",
        "pullchat.egg-info/PKG-INFO",
        "rpc_srv/pullchat.egg-info/PKG-INFO",
        ".hypothesis/examples/x",
        ".mypy_cache/3.11/x.json",
        ".pytest_cache/v/x",
        "deploy/redis-cluster-init.sh",
        "deploy/local-base-images.sh",
        "docker-compose.yml",
        ".env",
        "tests_docker/test_compose_engine.py",
    ):
        assert ignored(path), path


def test_image_install_step_builds_from_the_context_alone(tmp_path: Path) -> None:
    """The context alone builds the package, with the Lua scripts, OpenAPI and both commands."""
    src = tmp_path / "app"
    for rel in build_context():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, src / rel)
    # What `pip install --no-deps .` runs inside the wheel build; unlike `pip wheel` it
    # needs neither the network nor the wheel package (a fresh 3.11 venv has neither).
    setup = [sys.executable, "-c", "from setuptools import setup; setup()", "-q"]
    done = run([*setup, "egg_info", "build_py", "--build-lib", str(tmp_path / "lib")], cwd=src)
    assert done.returncode == 0, done.stdout + done.stderr
    built = {p.relative_to(tmp_path / "lib").as_posix() for p in (tmp_path / "lib").rglob("*")}
    for lua in (ROOT / "rpc_srv" / "lua").glob("*.lua"):
        assert f"rpc_srv/lua/{lua.name}" in built
    assert {"http_srv/openapi.json", "http_srv/server.py", "rpc_srv/server.py"} <= built
    assert {"contract/wire.py", "contract/chat.py"} <= built
    (entry_points,) = src.glob("*.egg-info/entry_points.txt")
    text = entry_points.read_text("utf-8")
    for command in ("pullchat-http", "pullchat-rpc"):
        assert f"{command} = " in text


# --- docker-compose.yml, structure -------------------------------------------------------


def test_compose_file_shape() -> None:
    """Keys both Compose versions take; the default stack is redis, rpc-server, http-server."""
    data = compose()
    # No `version` (v2 warns), no `name` (v1 refuses it): .env names the project.
    assert {k for k in data if not k.startswith("x-")} == {"services", "volumes"}
    dotenv = dict(
        line.split("=", 1)
        for line in (ROOT / ".env").read_text("utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    )
    assert dotenv == {"COMPOSE_PROJECT_NAME": "pullchat"}
    unprofiled = {n for n, s in data["services"].items() if not s.get("profiles")}
    assert unprofiled == set(DEFAULT_SERVICES)
    # Variables only as ${VAR}, ${VAR:-default} or $$: a bare $VAR is easy to misread.
    text = (ROOT / "docker-compose.yml").read_text("utf-8")
    assert not re.search(r"\$(?!\{|\$)", VAR.sub("", text).replace("$$", ""))


def test_redis_is_private_durable_and_checked() -> None:
    """Redis 7 with AOF fsynced every second, on a named volume, never published."""
    redis_svc = service("redis")
    assert redis_svc["image"] == "${REDIS_IMAGE:-redis:7}"
    assert "ports" not in redis_svc
    command = " ".join(redis_svc["command"])
    assert "--appendonly yes" in command and "--appendfsync everysec" in command
    (volume,) = redis_svc["volumes"]
    name, target = volume.split(":")[:2]
    assert target == "/data" and name in compose()["volumes"]
    test = " ".join(redis_svc["healthcheck"]["test"])
    assert "redis-cli" in test and "ping" in test


def test_every_default_service_has_a_meaningful_healthcheck() -> None:
    """Redis pings; the RPC service wants code 0 from /health; the front end wants /ping."""
    for name in DEFAULT_SERVICES:
        check = service(name)["healthcheck"]
        assert check["test"][0] in ("CMD", "CMD-SHELL"), name
        for key in ("interval", "timeout"):
            assert duration(check[key]) > 0
        assert int(check["retries"]) >= 3
    rpc_test = service("rpc-server")["healthcheck"]["test"][-1]
    assert "/health" in rpc_test and "'code') == 0" in rpc_test
    assert "/ping" in service("http-server")["healthcheck"]["test"][-1]


def test_rpc_server_is_internal_scalable_and_drains() -> None:
    """No fixed name, no published port, waits for Redis, replicas, time to drain on stop."""
    rpc = service("rpc-server")
    assert "container_name" not in rpc and "ports" not in rpc
    env = service_env("rpc-server")
    assert env["RPC_HOST"] == "0.0.0.0" and env["RPC_PORT"] == "8888"
    assert [str(p) for p in rpc["expose"]] == [env["RPC_PORT"]]
    assert env["REDIS_URL"] == "redis://redis:6379/0"
    assert rpc["depends_on"] == {"redis": {"condition": "service_healthy"}}
    assert int(interpolate(str(rpc["deploy"]["replicas"]))) >= 1
    assert rpc["restart"] == "unless-stopped" and rpc.get("init") is True
    drain = float(env["RPC_DRAIN_SECONDS"]) + float(env["RPC_GRACEFUL_TIMEOUT"])
    assert duration(rpc["stop_grace_period"]) > drain


def test_http_server_publishes_8080_and_finds_every_rpc_replica_by_name() -> None:
    """The one public port; RPC_URL names the rpc-server service, which resolves to each replica."""
    http = service("http-server")
    assert http["ports"] == ["${PUBLISH_ADDRESS:-0.0.0.0}:${PUBLISH_PORT:-8080}:8080"]
    assert [interpolate(p) for p in http["ports"]] == ["0.0.0.0:8080:8080"]
    assert [interpolate(p, {"PUBLISH_ADDRESS": "127.0.0.1"}) for p in http["ports"]] == [
        "127.0.0.1:8080:8080"
    ]
    env = service_env("http-server")
    assert env["HTTP_HOST"] == "0.0.0.0" and env["HTTP_PORT"] == "8080"
    url = urlsplit(env["RPC_URL"])
    assert (url.hostname, str(url.port)) == ("rpc-server", service_env("rpc-server")["RPC_PORT"])
    assert http["depends_on"] == {"rpc-server": {"condition": "service_healthy"}}
    assert duration(http["stop_grace_period"]) > float(env["HTTP_GRACEFUL_TIMEOUT"])
    assert "container_name" not in http


def test_dependencies_are_declared_and_can_be_met() -> None:
    """Each depends_on names a service that can satisfy its condition, in a compatible profile."""
    services = compose()["services"]
    for name, svc in services.items():
        for dep, spec in (svc.get("depends_on") or {}).items():
            assert dep in services, (name, dep)
            condition = spec["condition"]
            if condition == "service_healthy":
                assert "healthcheck" in services[dep], (name, dep)
            else:
                assert condition == "service_completed_successfully", (name, dep)
                assert services[dep].get("restart") == "no", (name, dep)
            # A service started without a profile cannot wait for one that needs it.
            assert set(services[dep].get("profiles") or []) <= set(svc.get("profiles") or [])


def test_cluster_profile() -> None:
    """--profile cluster: three masters announcing their names, a bootstrap, both tiers."""
    services = compose()["services"]
    cluster = {n for n, s in services.items() if "cluster" in (s.get("profiles") or [])}
    assert cluster == {*CLUSTER_NODES, "redis-cluster-init", *APP_SERVICES[2:]}
    volumes = set()
    for name in CLUSTER_NODES:
        node = services[name]
        assert node["image"] == "${REDIS_IMAGE:-redis:7}" and "ports" not in node
        args = node["command"]
        pairs = dict(zip(args[1::2], args[2::2], strict=True))
        assert pairs["--cluster-enabled"] == "yes"
        assert pairs["--appendonly"] == "yes" and pairs["--appendfsync"] == "everysec"
        assert pairs["--cluster-announce-hostname"] == name
        assert pairs["--cluster-preferred-endpoint-type"] == "hostname"
        assert "healthcheck" in node
        volumes.add(node["volumes"][0].split(":")[0])
    assert len(volumes) == 3
    init = services["redis-cluster-init"]
    assert init["command"] == [f"{n}:6379" for n in CLUSTER_NODES]
    script = init["entrypoint"][-1]
    mounts = {m.split(":")[1]: m.split(":")[0] for m in init["volumes"]}
    assert (ROOT / mounts[script]).is_file()
    rpc, http = service_env("rpc-server-cluster"), service_env("http-server-cluster")
    assert urlsplit(rpc["REDIS_URL"]).hostname in CLUSTER_NODES
    assert rpc["REDIS_CLUSTER"] in ("auto", "yes")
    assert urlsplit(http["RPC_URL"]).hostname == "rpc-server-cluster"
    published = [interpolate(p) for s in services.values() for p in s.get("ports", [])]
    assert sorted(published) == ["0.0.0.0:8080:8080", "0.0.0.0:8081:8080"]
    assert services["redis-cluster-init"]["image"] == service("redis")["image"]
    # The cluster tiers differ from the default ones only where they must.
    for name in APP_SERVICES[2:]:
        base = service(name.removesuffix("-cluster"))
        same = {k for k in base if k not in ("environment", "ports", "depends_on", "profiles")}
        assert {k: services[name].get(k) for k in same} == {k: base[k] for k in same}


def test_named_volumes_are_declared_and_used() -> None:
    """Every named volume a service mounts is declared, and every declared one is mounted."""
    used = {
        m.split(":")[0]
        for s in compose()["services"].values()
        for m in s.get("volumes", [])
        if not m.startswith((".", "/"))
    }
    assert used == set(compose()["volumes"])


def test_variable_defaults_are_the_documented_ones() -> None:
    """Each ${VAR:-default} is README's (and the settings') default; other variables documented."""
    text = (ROOT / "docker-compose.yml").read_text("utf-8")
    found = {(m["name"], m["default"]) for m in VAR.finditer(text)}
    assert found
    deploy_readme = (ROOT / "deploy" / "README.md").read_text("utf-8")
    for name, default in found:
        assert default is not None, f"${{{name}}} has no default"
        if name in readme_defaults():
            assert default == readme_defaults()[name], name
            typed = settings_defaults()[name]
            assert type(typed)(default) == typed, name
        else:
            assert f"`{name}`" in deploy_readme, f"{name} is documented nowhere"


def test_base_images_are_variables_defaulting_to_the_official_ones() -> None:
    """PYTHON_IMAGE (a build argument) and REDIS_IMAGE; unset, the official images."""
    default = dockerfile_base_default()
    for name in APP_SERVICES:
        build = service(name)["build"]
        assert build["context"] == "."
        assert build["args"] == {"PYTHON_IMAGE": f"${{PYTHON_IMAGE:-{default}}}"}, name
        assert service(name)["image"] == "pullchat:local"
    redis_services = [n for n, s in compose()["services"].items() if n not in APP_SERVICES]
    assert len(redis_services) == 5
    for name in redis_services:
        image = service(name)["image"]
        assert interpolate(image) == "redis:7", name
        local = {"REDIS_IMAGE": "pullchat-base/redis:7"}
        assert interpolate(image, local) == "pullchat-base/redis:7", name


def test_console_commands_exist() -> None:
    """Each app service runs a console command of setup.cfg that pip installed here."""
    scripts = console_scripts()
    for name in APP_SERVICES:
        command = service(name)["command"]
        assert len(command) == 1 and command[0] in scripts, (name, command)
        assert (BIN / command[0]).exists(), command[0]
    assert service("rpc-server")["command"] == ["pullchat-rpc"]
    assert service("http-server")["command"] == ["pullchat-http"]


def test_compose_environment_values_are_accepted_by_the_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Every value compose sets is one the tier's settings take (no SettingError at start)."""
    for name, cls in (
        ("rpc-server", RpcSettings),
        ("http-server", HttpSettings),
        ("rpc-server-cluster", RpcSettings),
        ("http-server-cluster", HttpSettings),
    ):
        with monkeypatch.context() as m:
            for key, value in service_env(name).items():
                m.setenv(key, value)
            cls.from_env()


# --- the containers' commands, run here --------------------------------------------------


def test_rpc_healthcheck_fails_without_redis_and_when_down(tmp_path: Path) -> None:
    """Unhealthy while Redis is unreachable (code 2), and once stopped; stops within its grace."""
    env = service_env(
        "rpc-server",
        RPC_HOST="127.0.0.1",
        RPC_PORT=str(free_port()),
        REDIS_URL=f"redis://127.0.0.1:{free_port()}/0",  # nobody listens there
    )
    child = console_child("rpc-server", "pullchat-rpc", env, tmp_path / "rpc.log").start()
    try:
        assert run_healthcheck("rpc-server", env) == 1
    finally:
        status, took = stop_timed(child, duration(service("rpc-server")["stop_grace_period"]))
    assert status == 0 and took < duration(service("rpc-server")["stop_grace_period"])
    assert run_healthcheck("rpc-server", env) != 0


def test_http_stops_within_its_grace_and_its_check_then_fails(
    rpc_server: Running, tmp_path: Path
) -> None:
    """SIGTERM stops `pullchat-http` within stop_grace_period; afterwards its check fails."""
    rpc_url = f"http://127.0.0.1:{rpc_server.env['RPC_PORT']}"
    env = service_env(
        "http-server", HTTP_HOST="127.0.0.1", HTTP_PORT=str(free_port()), RPC_URL=rpc_url
    )
    child = console_child("http-server", "pullchat-http", env, tmp_path / "http.log").start()
    assert run_healthcheck("http-server", env) == 0
    # With several workers, Sanic's manager holds a SIGTERM that arrives before
    # it has registered its workers' start-up acknowledgements (about half a
    # second after they serve) until its 30 s ack timeout: a known quirk of
    # Sanic, noted in the README. A container is not stopped that early.
    time.sleep(1.5)
    grace = duration(service("http-server")["stop_grace_period"])
    status, took = stop_timed(child, grace)
    assert status == 0 and took < grace, (status, took)
    assert run_healthcheck("http-server", env) != 0


def init_argv(addresses: list[str]) -> list[str]:
    """redis-cluster-init's entrypoint and command, its script mapped to deploy/."""
    init = service("redis-cluster-init")
    mounts = {m.split(":")[1]: m.split(":")[0] for m in init["volumes"]}
    entrypoint = [str(ROOT / mounts[a]) if a in mounts else a for a in init["entrypoint"]]
    return [*entrypoint, *addresses]


@dataclass
class Node:
    child: Child
    host: str
    port: int
    bus: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def start_cluster_nodes(
    tmp: Path, hosts: tuple[str, ...] = ("127.0.0.1",) * 3, like: list[Node] | None = None
) -> list[Node]:
    """The three cluster nodes' commands, each announcing "localhost" for its service name.

    Given `like`, the nodes start again with its ports and data, at `hosts`.
    """
    nodes: list[Node] = []
    try:
        for i, (name, host) in enumerate(zip(CLUSTER_NODES, hosts, strict=True)):
            port, bus = (like[i].port, like[i].bus) if like else (free_port(), free_port())
            # The bus port is not port + 10000, which may be taken; and on loopback a
            # node would talk from 127.0.0.1 whatever its address, unlike a container.
            extra = ("--cluster-port", str(bus), "--bind-source-addr", host)
            command = service(name)["command"]
            child, _ = start_redis(
                command, tmp / name, *extra, host=host, port=port, **{name: "localhost"}
            )
            nodes.append(Node(child, host, port, bus))
    except BaseException:
        stop_nodes(nodes)
        raise
    return nodes


def stop_nodes(nodes: list[Node]) -> None:
    for node in nodes:
        node.child.stop()


def local_addresses(nodes: list[Node]) -> list[str]:
    """redis-cluster-init's command with our nodes' addresses, by name where there is one."""
    args = service("redis-cluster-init")["command"]
    assert args == [f"{name}:6379" for name in CLUSTER_NODES]
    return [n.address.replace("127.0.0.1:", "localhost:") for n in nodes]


def cluster_env(**extra: str) -> dict[str, str]:
    """The init script's environment: our redis-cli first on PATH."""
    path = f"{redis_bin_dir()}{os.pathsep}{os.environ['PATH']}"
    return dict(os.environ, PATH=path, **extra)


def test_cluster_bootstrap_relinks_nodes_that_came_back_elsewhere(tmp_path: Path) -> None:
    """Nodes restarted at other addresses, as recreated containers may be, are linked again."""
    nodes = start_cluster_nodes(tmp_path)
    try:
        formed = run(init_argv(local_addresses(nodes)), cluster_env(CLUSTER_INIT_TIMEOUT="30"))
        assert formed.returncode == 0, formed.stdout + formed.stderr
    finally:
        stop_nodes(nodes)
    # Their nodes.conf still has 127.0.0.1: left alone they would never find each other.
    moved = start_cluster_nodes(tmp_path, ("127.0.0.2", "127.0.0.3", "127.0.0.4"), like=nodes)
    try:
        done = run(init_argv(local_addresses(moved)), cluster_env(CLUSTER_INIT_TIMEOUT="20"))
        assert done.returncode == 0 and "already formed" in done.stdout, done.stdout + done.stderr
        for node in moved:
            client = redis.Redis(host=node.host, port=node.port, decode_responses=True)
            view = client.cluster("NODES")
            client.close()
            assert {addr.split("@")[0] for addr in view} == {n.address for n in moved}, view
            assert all(v["connected"] for v in view.values()), view
    finally:
        stop_nodes(moved)


def test_cluster_bootstrap_fails_when_nodes_are_missing() -> None:
    """With no node listening the init script fails, so nothing starts on a broken cluster."""
    argv = init_argv([f"localhost:{free_port()}" for _ in CLUSTER_NODES])
    done = run(argv, cluster_env(CLUSTER_INIT_TIMEOUT="2"))
    assert done.returncode != 0


def test_cluster_bootstrap_fails_unless_every_node_serves(tmp_path: Path) -> None:
    """The init script fails on a node it cannot add, and while a node of the cluster is down."""
    nodes = start_cluster_nodes(tmp_path)
    argv = init_argv(local_addresses(nodes))
    try:
        first = redis.Redis(port=nodes[0].port)
        # Not empty any more (the bus port given: port + 10000 may not exist).
        first.execute_command("CLUSTER MEET", "127.0.0.1", nodes[1].port, nodes[1].bus)
        first.close()
        refused = run(argv, cluster_env(CLUSTER_INIT_TIMEOUT="2"))
        assert refused.returncode != 0, refused.stdout
        for node in nodes[:2]:
            client = redis.Redis(port=node.port)
            client.execute_command("CLUSTER RESET", "HARD")
            client.close()
        formed = run(argv, cluster_env(CLUSTER_INIT_TIMEOUT="30"))
        assert formed.returncode == 0, formed.stdout + formed.stderr
        nodes[2].child.stop()
        degraded = run(argv, cluster_env(CLUSTER_INIT_TIMEOUT="2"))
        assert degraded.returncode != 0 and "not ready" in degraded.stderr, degraded.stdout
    finally:
        stop_nodes(nodes)
