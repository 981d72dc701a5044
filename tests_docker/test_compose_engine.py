"""docker-compose.yml on a real Docker engine, with Compose v1 (1.29) and v2.

The stack runs on local base images built from Debian packages
(deploy/local-base-images.sh); every request goes to the front end's published
port on 127.0.0.1. The tests run in this order and share the project: the
default stack, the API probe, scaling, a Redis kill, the cluster profile, every
healthcheck, `down -v`, the same stack under Compose v2, and the engine's stop.
"""

from __future__ import annotations

import os
import re
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import orjson
import pytest
import yaml

from tests_docker.engine import (
    DEFAULT_COUNTS,
    PROJECT,
    Answer,
    Compose,
    Engine,
    Failed,
    call,
    cmdline,
    pull,
    send,
    state_text,
    wait_for,
    walk,
)

# A backstop only: every step has its own, shorter bound.
pytestmark = pytest.mark.timeout(1200)

CLUSTER_COUNTS = {
    "redis-node-1": 1,
    "redis-node-2": 1,
    "redis-node-3": 1,
    "rpc-server-cluster": 2,
    "http-server-cluster": 1,
}
RecordProperty = Callable[[str, object], None]


def tag() -> str:
    return uuid.uuid4().hex[:8]


def error_shape(answer: Answer) -> None:
    """The contract's error body: JSON, a non-zero integer code and words."""
    assert answer.content_type.startswith("application/json"), answer
    assert isinstance(answer.body, dict), answer
    assert isinstance(answer.body.get("code"), int) and answer.body["code"] != 0, answer.body
    assert isinstance(answer.body.get("msg"), str) and answer.body["msg"], answer.body


# --- the file, read by both Compose versions -----------------------------------------------


def test_both_compose_versions_accept_the_file(engine: Engine) -> None:
    """v1 (1.29) and v2 validate the file and agree on services, project and defaults."""
    assert "1.29." in engine.v1("version", "--short").stdout
    assert engine.v2("version", "--short").stdout.strip().startswith(("2.", "v2."))
    for compose in (engine.v1, engine.v2):
        compose("config", "-q")
        services = compose("--profile", "cluster", "config", "--services").stdout.split()
        assert sorted(services) == sorted(
            ["redis", "rpc-server", "http-server", *CLUSTER_COUNTS, "redis-cluster-init"]
        )
    # v2 prints the project name it will use: .env's, not the folder's.
    assert yaml.safe_load(engine.v2("config").stdout)["name"] == PROJECT
    # Without the local images named, both take the official ones: the file's defaults.
    for compose in (engine.v1, engine.v2):
        env = {k: v for k, v in compose.env.items() if k not in ("PYTHON_IMAGE", "REDIS_IMAGE")}
        default = yaml.safe_load(Compose(compose.argv, env)("config").stdout)
        assert default["services"]["redis"]["image"] == "redis:7"
        args = default["services"]["rpc-server"]["build"]["args"]
        assert args["PYTHON_IMAGE"] == "python:3.11-slim"
        local = yaml.safe_load(compose("config").stdout)["services"]
        assert local["redis"]["image"] == engine.images["REDIS_IMAGE"]
        assert local["rpc-server"]["build"]["args"]["PYTHON_IMAGE"] == engine.images["PYTHON_IMAGE"]


# --- the default stack ---------------------------------------------------------------------


def test_default_stack_is_healthy_on_the_local_images_and_published_on_loopback(
    stack: Engine,
) -> None:
    """redis, two rpc-server replicas (deploy.replicas), http-server; only it publishes."""
    services = stack.docker.services()
    assert {name: len(infos) for name, infos in services.items()} == DEFAULT_COUNTS
    for name, infos in services.items():
        for info in infos:
            assert state_text(info) == "running healthy", (name, state_text(info))
            labels = info["Config"]["Labels"]
            assert labels["com.docker.compose.project"] == PROJECT
            bindings = info["HostConfig"]["PortBindings"] or {}
            if name == "http-server":
                assert bindings == {
                    "8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(stack.port)}]
                }
            else:
                assert not any(bindings.values()), (name, bindings)
    redis_info = services["redis"][0]
    assert redis_info["Config"]["Image"] == stack.images["REDIS_IMAGE"]
    redis_id = redis_info["Id"]
    for setting, value in (
        ("protected-mode", "no"),
        ("appendonly", "yes"),
        ("appendfsync", "everysec"),
        ("dir", "/data"),
    ):
        got = stack.docker("exec", redis_id, "redis-cli", "config", "get", setting).stdout
        assert got.split() == [setting, value]
    version = stack.docker("exec", redis_id, "redis-server", "--version").stdout
    assert re.search(r"v=7\.", version), version
    # The app image is built on the local python image: Debian's CPython 3.11, not root.
    rpc_id = services["rpc-server"][0]["Id"]
    assert stack.docker("exec", rpc_id, "id", "-u").stdout.strip() == "10001"
    built = stack.docker("exec", rpc_id, "python", "-c", "import sys; print(sys.version)").stdout
    assert built.startswith("3.11.")
    debian = stack.docker("exec", rpc_id, "cat", "/etc/debian_version").stdout
    assert debian.startswith("12."), debian


def test_api_probe_through_the_published_port(stack: Engine) -> None:
    """api.md: ping, both spellings of a chat, paging both ways, concurrent sends, 4xx."""
    port = stack.port
    ping = call(port, "GET", "/ping")
    assert (ping.status, ping.body) == (200, {"message": "pong"})

    t = tag()
    amy, zed = f"amy-{t}", f"zed-{t}"
    canonical = f"{amy}:{zed}"
    first = send(port, chat=f"{zed}:{amy}", sender=zed, text="hello")
    second = send(port, chat=canonical, sender=amy, text="hi")
    third = send(port, sender=zed, receiver=amy, text="by sender and receiver")
    for answer in (first, second, third):
        assert answer.status == 200 and answer.body["chat"] == canonical, answer.body
    times = [a.body["send_time"] for a in (first, second, third)]
    assert times == sorted(set(times))
    page = pull(port, f"{zed}:{amy}", limit=10)
    assert page.status == 200
    got = [(m["chat"], m["sender"], m["text"], m["send_time"]) for m in page.body["messages"]]
    assert got == [
        (canonical, zed, "hello", times[0]),
        (canonical, amy, "hi", times[1]),
        (canonical, zed, "by sender and receiver", times[2]),
    ]
    assert page.body["has_more"] is False and page.body["next_cursor"] == 0

    # Paging: 23 messages, pages of 4, each way: every message once, in order.
    chat = f"pager-{t}:reader-{t}"
    sent = []
    for i in range(23):
        answer = send(port, chat=chat, sender=f"pager-{t}", text=f"page {i}")
        assert answer.status == 200, answer.body
        sent.append((f"page {i}", answer.body["send_time"]))
    forward = [(m["text"], m["send_time"]) for m in walk(port, chat, limit=4)]
    backward = [(m["text"], m["send_time"]) for m in walk(port, chat, reverse=True, limit=4)]
    assert forward == sent
    assert backward == sent[::-1]

    # Ten sends at once: ten distinct, increasing send_times, each stored once.
    chat = f"crowd-{t}:quiet-{t}"
    with ThreadPoolExecutor(10) as pool:
        answers = list(
            pool.map(lambda i: send(port, chat=chat, sender=f"crowd-{t}", text=f"c{i}"), range(10))
        )
    assert all(a.status == 200 for a in answers), [a.body for a in answers]
    stamps = {a.body["send_time"] for a in answers}
    assert len(stamps) == 10
    stored = walk(port, chat, limit=3)
    assert sorted(m["text"] for m in stored) == sorted(f"c{i}" for i in range(10))
    stored_times = [m["send_time"] for m in stored]
    assert stored_times == sorted(stamps)
    assert {m["text"]: m["send_time"] for m in stored} == {
        f"c{i}": a.body["send_time"] for i, a in enumerate(answers)
    }

    # 4xx: JSON errors naming what was wrong, and nothing stored.
    quiet, other = f"q-{t}", f"r-{t}"
    target = f"{quiet}:{other}"
    json_headers = {"Content-Type": "application/json"}
    cases: list[tuple[int, str, Answer]] = [
        (400, "sender", send(port, chat=target, sender=f"x-{t}", text="not a member")),
        (400, "sender", send(port, chat=target, text="no sender")),
        (400, "chat", send(port, chat=f"{quiet}:{other}:{t}", sender=quiet, text="three")),
        (400, "text", send(port, chat=target, sender=quiet, text="x" * (64 * 1024 + 1))),
        (400, "", call(port, "POST", "/api/send", b'{"chat": ', json_headers)),
        (400, "", call(port, "POST", "/api/send", b'["not", "an object"]', json_headers)),
        (413, "", call(port, "POST", "/api/send", b"{" + b" " * (1 << 20) + b"}", json_headers)),
        (405, "", call(port, "GET", "/api/send")),
        (404, "", call(port, "GET", f"/api/nothing-{t}")),
        (400, "limit", pull(port, target, limit=1001)),
        (400, "cursor", call(port, "GET", f"/api/pull?chat={target}&cursor=-1")),
        (400, "chat", call(port, "GET", "/api/pull")),
    ]
    for status, field_name, answer in cases:
        assert answer.status == status, (status, field_name, answer)
        error_shape(answer)
        assert field_name in answer.body["msg"], answer.body
    empty = pull(port, target)
    assert empty.status == 200 and empty.body["messages"] == [], empty.body


def test_chat_page_and_conversations_through_the_image(stack: Engine) -> None:
    """The image carries the chat page's files; lists and read receipts work on its Redis."""
    port = stack.port
    page = call(port, "GET", "/")
    assert page.status == 200 and page.content_type.startswith("text/html"), page.status
    assert b'<script src="/web/app.js"' in page.body
    script = call(port, "GET", "/web/app.js")
    assert script.status == 200 and script.content_type.startswith("text/javascript")
    t = tag()
    amy, zed = f"amy-{t}", f"zed-{t}"
    sent = send(port, sender=zed, receiver=amy, text="listed")
    assert sent.status == 200, sent.body
    listed = call(port, "GET", f"/api/chats?user={amy}")
    assert listed.status == 200, listed.body
    (entry,) = listed.body["chats"]
    assert (entry["peer"], entry["unread"], entry["last_message"]["text"]) == (zed, 1, "listed")
    body = orjson.dumps({"chat": entry["chat"], "user": amy, "send_time": sent.body["send_time"]})
    read = call(port, "POST", "/api/read", body, {"Content-Type": "application/json"})
    assert (read.status, read.body["unread"]) == (200, 0), read.body


def rpc_calls(stack: Engine, container: str) -> float:
    """Send and Pull calls one RPC replica has answered, from its own /metrics."""
    text = stack.docker.exec_python(
        container,
        "import os, urllib.request; print(urllib.request.urlopen("
        "'http://127.0.0.1:%s/metrics' % os.environ.get('RPC_PORT', '8888'), timeout=5)"
        ".read().decode())",
    )
    values = re.findall(r"^pullchat_rpc_calls_total\{[^}]*\} (\S+)$", text, re.M)
    return sum(float(v) for v in values)


def test_scale_to_three_rpc_replicas_spreads_calls_over_all(
    stack: Engine, record_property: RecordProperty
) -> None:
    """--scale rpc-server=3: the third replica becomes healthy and each of the three answers."""
    stack.v1("up", "-d", "--no-recreate", "--scale", "rpc-server=3", timeout=300)
    stack.docker.wait_healthy(dict(DEFAULT_COUNTS, **{"rpc-server": 3}), timeout=90)
    replicas = [i["Id"] for i in stack.docker.services()["rpc-server"]]
    assert len(replicas) == 3
    port = stack.port
    chat = f"spread-{tag()}:b"

    # The front end finds the new replica within RPC_RESOLVE_INTERVAL (5 s).
    def front_end_knows_three() -> bool:
        pull(port, chat)
        metrics = call(port, "GET", "/metrics").body.decode()
        known = re.search(r"^pullchat_rpc_client_replicas(?:\{[^}]*\})? (\S+)$", metrics, re.M)
        return known is not None and float(known[1]) == 3

    record_property("front end saw 3 replicas after (s)", round(
        wait_for("front end knows 3 replicas", front_end_knows_three, 30), 1
    ))  # fmt: skip
    before = [rpc_calls(stack, r) for r in replicas]
    pulls = 120
    for _ in range(pulls):
        assert pull(port, chat).status == 200
    after = [rpc_calls(stack, r) for r in replicas]
    spread = [round(a - b) for a, b in zip(after, before, strict=True)]
    record_property("calls per replica, of 120 pulls", spread)
    assert sum(spread) >= pulls
    assert all(n >= pulls // 6 for n in spread), spread


def test_redis_killed_and_started_again_loses_no_acknowledged_message(
    stack: Engine, record_property: RecordProperty
) -> None:
    """docker kill redis under senders, start it again: every 200 is still stored, once."""
    port = stack.port
    t = tag()
    chat = f"keep-{t}:safe-{t}"
    sender = f"keep-{t}"
    acked: dict[str, int] = {}
    for i in range(20):
        answer = send(port, chat=chat, sender=sender, text=f"before {i}")
        assert answer.status == 200, answer.body
        acked[f"before {i}"] = answer.body["send_time"]
    time.sleep(2.0)  # past appendfsync everysec, even a postponed fsync

    services = stack.docker.services()
    redis_info = services["redis"][0]
    redis_id, redis_started = redis_info["Id"], redis_info["State"]["StartedAt"]
    app = {
        i["Id"]: i["State"]["StartedAt"] for n in ("rpc-server", "http-server") for i in services[n]
    }

    lock = threading.Lock()
    outage: list[Answer] = []
    failures: list[str] = []
    after_restart: list[int] = []
    stop = threading.Event()
    restarted = threading.Event()

    def sender_loop(worker: int) -> None:
        for i in range(100_000):
            if stop.is_set():
                return
            text = f"live {worker} {i}"
            try:
                answer = send(port, timeout=10, chat=chat, sender=sender, text=text)
            except OSError as exc:
                with lock:
                    failures.append(f"{text}: {exc!r}")
                continue
            with lock:
                if answer.status == 200:
                    acked[text] = answer.body["send_time"]
                    if restarted.is_set():
                        after_restart.append(1)
                else:
                    outage.append(answer)
            time.sleep(0.01)

    threads = [threading.Thread(target=sender_loop, args=(w,), daemon=True) for w in range(2)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.0)
        stack.docker("kill", redis_id)
        killed_at = time.monotonic()
        wait_for(
            "redis exited",
            lambda: stack.docker.inspect([redis_id])[0]["State"]["Status"] == "exited",
            30,
        )
        time.sleep(1.5)
        stack.docker("start", redis_id)
        restarted.set()
        down_for = time.monotonic() - killed_at
        healthy = wait_for(
            "redis healthy again",
            lambda: state_text(stack.docker.inspect([redis_id])[0]) == "running healthy",
            60,
        )
        wait_for("200s again after the restart", lambda: len(after_restart) >= 20, 30)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    assert not any(thread.is_alive() for thread in threads)

    assert not failures, failures[:5]
    assert outage, "no send failed while Redis was down: was it killed?"
    for answer in outage:
        assert answer.status in (503, 504), answer
        error_shape(answer)
    slowest = max(a.seconds for a in outage)
    assert slowest < 4.0, slowest  # RPC_TIMEOUT (2 s) plus the way through Docker

    stored = walk(port, chat, limit=1000)
    texts = [m["text"] for m in stored]
    assert len(texts) == len(set(texts)), "a message stored twice"
    lost = sorted(set(acked) - set(texts))
    assert not lost, f"{len(lost)} acknowledged messages lost: {lost[:5]}"
    changed = [m for m in stored if m["text"] in acked and acked[m["text"]] != m["send_time"]]
    assert not changed, changed[:3]
    times = [m["send_time"] for m in stored]
    assert times == sorted(set(times))

    info = stack.docker.inspect([redis_id])[0]
    assert info["State"]["StartedAt"] != redis_started
    persistence = stack.docker("exec", redis_id, "redis-cli", "info", "persistence").stdout
    assert "aof_enabled:1" in persistence
    now = {i["Id"]: i["State"]["StartedAt"] for i in stack.docker.inspect(app)}
    assert now == app, "an app container restarted"
    record_property("acknowledged", len(acked))
    record_property("lost", len(lost))
    record_property("outage answers (all JSON 503/504)", len(outage))
    record_property("slowest outage answer (s)", round(slowest, 2))
    record_property("redis down (s)", round(down_for, 1))
    record_property("redis healthy after start (s)", round(healthy, 1))


def test_cluster_profile_answers_on_its_port(
    stack: Engine, record_property: RecordProperty
) -> None:
    """--profile cluster: the bootstrap exits 0, the stack on :8081 works, data on every node."""
    started = time.monotonic()
    stack.v1("--profile", "cluster", "up", "-d", timeout=300)
    stack.docker.wait_healthy(CLUSTER_COUNTS, timeout=120)
    record_property("cluster stack up and healthy (s)", round(time.monotonic() - started, 1))
    (init,) = stack.docker.services()["redis-cluster-init"]
    assert state_text(init) == "exited 0"
    bindings = stack.docker.services()["http-server-cluster"][0]["HostConfig"]["PortBindings"]
    assert bindings == {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(stack.cluster_port)}]}

    port = stack.cluster_port
    assert call(port, "GET", "/ping").body == {"message": "pong"}
    t = tag()
    chats = [f"u{i}-{t}:v{i}-{t}" for i in range(24)]
    for i, chat in enumerate(chats):
        a, b = chat.split(":")
        for j, (spelled, sender) in enumerate(((f"{b}:{a}", a), (chat, b))):
            answer = send(port, chat=spelled, sender=sender, text=f"{i}.{j}")
            assert answer.status == 200 and answer.body["chat"] == chat, answer.body
    for i, chat in enumerate(chats):
        texts = [m["text"] for m in walk(port, chat, limit=1)]
        assert texts == [f"{i}.0", f"{i}.1"]
        assert [m["text"] for m in walk(port, chat, reverse=True, limit=1)] == texts[::-1]
    # Spread over the three masters by hash slot; each hands out the others by name.
    nodes = [n for n in CLUSTER_COUNTS if n.startswith("redis-node")]
    sizes = []
    for name in nodes:
        (node,) = stack.docker.services()[name]
        info = stack.docker("exec", node["Id"], "redis-cli", "cluster", "info").stdout
        assert "cluster_state:ok" in info
        slots = stack.docker("exec", node["Id"], "redis-cli", "cluster", "slots").stdout.split()
        assert set(nodes) <= set(slots), slots
        sizes.append(int(stack.docker("exec", node["Id"], "redis-cli", "dbsize").stdout))
    record_property("keys per cluster node", sizes)
    assert all(n > 0 for n in sizes), sizes
    # The bootstrap again, as the next `up` runs it: it finds the cluster formed.
    again = stack.v1("--profile", "cluster", "run", "--rm", "-T", "redis-cluster-init", timeout=120)
    assert "cluster already formed" in again.stdout and "cluster ready" in again.stdout
    # The default stack is untouched beside it.
    assert call(stack.port, "GET", "/ping").status == 200


def test_every_healthcheck_is_healthy(stack: Engine) -> None:
    """Every container of both stacks with a healthcheck reports healthy; none restarted."""
    services = stack.docker.services()
    assert set(services) == {*DEFAULT_COUNTS, *CLUSTER_COUNTS, "redis-cluster-init"}
    checked = 0
    for name, infos in services.items():
        for info in infos:
            if name == "redis-cluster-init":
                assert state_text(info) == "exited 0"
                continue
            assert info["Config"].get("Healthcheck"), f"{name} has no healthcheck"
            assert state_text(info) == "running healthy", (name, state_text(info))
            assert info["RestartCount"] == 0, (name, info["RestartCount"])
            checked += 1
    assert checked == sum(DEFAULT_COUNTS.values()) + sum(CLUSTER_COUNTS.values())


def leftovers(stack: Engine) -> dict[str, list[str]]:
    label = f"label=com.docker.compose.project={PROJECT}"
    found = {}
    for kind in ("container", "volume", "network"):
        listing = ["ls", "-q"] if kind != "container" else ["ls", "-a", "-q"]
        found[kind] = stack.docker(kind, *listing, "--filter", label).stdout.split()
    return found


def test_down_removes_containers_volumes_and_network(stack: Engine) -> None:
    """`down -v` (v1) leaves no container, volume or network of the project."""
    assert all(leftovers(stack).values())
    stack.v1("--profile", "cluster", "down", "-v", "--remove-orphans", "-t", "20", timeout=180)
    assert leftovers(stack) == {"container": [], "volume": [], "network": []}


def test_compose_v2_runs_the_same_stack(stack: Engine, record_property: RecordProperty) -> None:
    """`docker compose up -d --wait` (v2) on the same file and images, then `down -v`."""
    started = time.monotonic()
    stack.v2("up", "-d", "--wait", "--wait-timeout", "120", timeout=300)
    record_property("v2 up --wait (s)", round(time.monotonic() - started, 1))
    try:
        services = stack.docker.services()
        assert {n: len(i) for n, i in services.items()} == DEFAULT_COUNTS
        names = sorted(i["Name"].lstrip("/") for infos in services.values() for i in infos)
        assert names == sorted(
            [f"{PROJECT}-redis-1", f"{PROJECT}-http-server-1"]
            + [f"{PROJECT}-rpc-server-{n}" for n in (1, 2)]
        )
        assert all(state_text(i) == "running healthy" for v in services.values() for i in v)
        port = stack.port
        t = tag()
        answer = send(port, chat=f"v2b-{t}:v2a-{t}", sender=f"v2b-{t}", text="via v2")
        assert answer.status == 200 and answer.body["chat"] == f"v2a-{t}:v2b-{t}", answer.body
        assert [m["text"] for m in walk(port, f"v2a-{t}:v2b-{t}")] == ["via v2"]
    finally:
        stack.v2("--profile", "cluster", "down", "-v", "--remove-orphans", "-t", "20", timeout=180)
    assert leftovers(stack) == {"container": [], "volume": [], "network": []}


def test_dockerd_stops_and_leaves_nothing_running(engine: Engine) -> None:
    """The engine stops on SIGTERM to its PID; none of its processes are left."""
    ours = engine.dockerd.ours()
    assert engine.dockerd.child is not None and engine.dockerd.child.pid in ours
    assert engine.docker("ps", "-q").stdout.split() == []
    engine.docker("image", "prune", "-f", timeout=120)
    engine.stopped = True
    status = engine.dockerd.stop(timeout=60)
    assert status == 0, status
    assert not engine.dockerd.answers()

    def gone() -> bool:
        return not [pid for pid in ours if os.path.exists(f"/proc/{pid}")]

    try:
        wait_for("the engine's processes gone", gone, 15)
    except Failed:
        alive = {pid: cmdline(pid) for pid in ours if os.path.exists(f"/proc/{pid}")}
        raise Failed(f"left running: {alive}") from None
    assert engine.dockerd.ours() == set()
