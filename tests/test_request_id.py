"""A request id from the client (or made by the front end): in answers, RPC calls, log lines."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from contract.request_ids import (
    BATCH_FIELD,
    HEADER,
    MAX_CHARS,
    RequestIdFilter,
    awaited_as,
    batch_call_id,
)
from launcher.procs import free_port
from launcher.stack import Stack
from rpc_srv.middlewares import request_id_middleware
from tests.stacks import StackFactory

NEW_ID = re.compile(r"[0-9a-f]{32}")


class RecordingRelay:
    """Between the front end and the RPC service: notes each call's id, forwards as is."""

    def __init__(self) -> None:
        self.target = ""
        self.ids: list[str | None] = []
        self.batches = 0
        self.session: aiohttp.ClientSession | None = None

    async def relay(self, request: web.Request) -> web.Response:
        body = await request.read()
        if request.path.endswith("/batch"):
            self.batches += 1
            self.ids += [c.get(BATCH_FIELD) for c in orjson.loads(body)["calls"]]
        else:
            self.ids.append(request.headers.get(HEADER))
        assert self.session is not None
        async with self.session.post(
            self.target + request.path, data=body, headers={"Content-Type": "application/json"}
        ) as resp:
            return web.Response(body=await resp.read(), status=resp.status, headers=resp.headers)


@pytest.fixture
async def relayed(
    redis_url: str, make_stack: StackFactory
) -> AsyncIterator[tuple[Stack, RecordingRelay]]:
    """A stack (access log on) whose front end reaches the RPC service through a relay."""
    recorder = RecordingRelay()
    app = web.Application()
    app.router.add_post("/{path:.*}", recorder.relay)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    recorder.session = aiohttp.ClientSession()
    stack = await asyncio.to_thread(
        make_stack,
        redis_url,
        RPC_URL=f"http://127.0.0.1:{port}",
        HTTP_ACCESS_LOG="true",
        HTTP_WORKERS="1",
    )
    recorder.target = stack.env["RPC_URL"].replace(str(port), stack.env["RPC_PORT"])
    yield stack, recorder
    await asyncio.to_thread(stack.stop)  # while the relay still forwards
    await recorder.session.close()
    await runner.cleanup()


async def test_ids_go_with_each_rpc_call_single_and_batched(
    relayed: tuple[Stack, RecordingRelay],
) -> None:
    """Concurrent requests are batched; each call carries its own request's id."""
    stack, recorder = relayed
    sent = [f"client-{i}.x:y" for i in range(30)]
    async with aiohttp.ClientSession() as http:

        async def pull(rid: str) -> str:
            async with http.get(
                f"{stack.base}/api/pull", params={"chat": "ann:bob"}, headers={HEADER: rid}
            ) as resp:
                assert resp.status == 200
                return resp.headers[HEADER]

        echoed = await asyncio.gather(*(pull(rid) for rid in sent))
        assert echoed == sent
        assert await pull("lone-one") == "lone-one"
    assert sorted(i for i in recorder.ids if i is not None) == sorted([*sent, "lone-one"])
    assert None not in recorder.ids
    # The relay answers no GET, so it refuses /rpc/stream (405): batches go as requests.
    assert recorder.batches >= 1  # some calls went in one /rpc/batch request
    access = (stack.log_dir / "http.log").read_text()
    for rid in [*sent, "lone-one"]:
        assert f"[request_id={rid}]" in access, rid


def raw_answer(base: str, request: bytes) -> bytes:
    """One request on a fresh connection, exactly as given; the answer's head."""
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return data.split(b"\r\n\r\n", 1)[0]


def header_of(head: bytes) -> str | None:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == HEADER.lower().encode():
            return value.strip().decode()
    return None


@pytest.fixture(scope="module")
def front(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    stacks = StackFactory(tmp_path_factory.mktemp("rid"))
    yield stacks(redis_url, REQUEST_MAX_LINE_BYTES="256")
    stacks.stop_all()


@pytest.mark.parametrize(
    ("target", "status"),
    [
        ("GET /ping", 200),
        ("GET /api/pull?chat=ann:bob", 200),
        ("GET /api/pull", 400),
        ("GET /nowhere", 404),
        ("DELETE /api/send", 405),
        ("GET /docs/ui/swagger-ui.css", 200),
        ("GET /" + "x" * 300, 414),
    ],
)
@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("abc-123", True),
        ("Root=1-5759e988-bd862e3f:x/y+z@q_.", True),
        ("x" * MAX_CHARS, True),
        ("x" * (MAX_CHARS + 1), False),
        ("has space", False),
        ('quote"', False),
        ("", False),
        (None, False),
    ],
)
def test_every_answer_carries_an_id(
    front: Stack, target: str, status: int, given: str | None, kept: bool
) -> None:
    """A safe client id comes back as it is; an unsafe or missing one is replaced by a new one.

    A head over its limits (414) is never read, so its answer has a new id.
    """
    headers = f"{HEADER}: {given}\r\n" if given is not None else ""
    request = f"{target} HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n"
    head = raw_answer(front.base, request.encode())
    assert head.startswith(f"HTTP/1.1 {status} ".encode()), head
    rid = header_of(head)
    assert rid is not None, head
    if kept and status != 414:
        assert rid == given
    else:
        assert NEW_ID.fullmatch(rid), rid


def test_ids_differ_per_request_on_one_connection(front: Stack) -> None:
    """Keep-alive requests without an id each get their own."""
    host, port = front.base.removeprefix("http://").split(":")
    ids = []
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        for _ in range(3):
            sock.sendall(b"GET /ping HTTP/1.1\r\nHost: x\r\n\r\n")
            data = b""
            while not data.endswith(b'{"message":"pong"}'):
                data += sock.recv(65536)
            ids.append(header_of(data))
    assert len(set(ids)) == 3 and all(i and NEW_ID.fullmatch(i) for i in ids)


def test_a_failed_rpc_call_is_logged_with_its_id(
    redis_url: str, make_stack: StackFactory, tmp_path: Path
) -> None:
    """The front end's error line for a call that cannot reach the RPC service names the id."""
    with make_stack(redis_url, RPC_URL=f"http://127.0.0.1:{free_port()}") as stack:
        request = f"GET /api/pull?chat=ann:bob HTTP/1.1\r\nHost: x\r\n{HEADER}: lost-1\r\n\r\n"
        head = raw_answer(stack.base, request.encode())
        assert head.startswith(b"HTTP/1.1 503 ") and header_of(head) == "lost-1", head
    lines = [line for line in (tmp_path / "http.log").read_text().splitlines() if "lost-1" in line]
    assert any("RPC pull failed" in line and "WARNING" in line for line in lines), lines


# --- the RPC service's half (rpc_srv/middlewares.py), on a real aiohttp server ---


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.addFilter(RequestIdFilter())
        self.seen: list[tuple[str, str | None]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append((record.getMessage(), record.request_id))  # type: ignore[attr-defined]


@pytest.fixture
async def rpc_like() -> AsyncIterator[tuple[str, Records]]:
    """An aiohttp server with the middleware whose handlers log, as the RPC's do."""
    log = logging.getLogger("test.rpc_like")
    records = Records()
    log.addHandler(records)

    async def single(request: web.Request) -> web.Response:
        log.warning("single")
        return web.json_response({"code": 0})

    async def call(name: str) -> str:
        await asyncio.sleep(0)
        log.warning(name)
        return name

    async def batch(request: web.Request) -> web.Response:
        calls = (await request.json())["calls"]
        started = [call(c["method"]) for c in calls]  # queued first, awaited in order
        replies = [
            await awaited_as(batch_call_id(c), p) for c, p in zip(calls, started, strict=True)
        ]
        log.warning("batch done")
        return web.json_response({"replies": replies})

    app = web.Application(middlewares=[request_id_middleware])
    app.router.add_post("/rpc/send", single)
    app.router.add_post("/rpc/batch", batch)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    yield f"http://127.0.0.1:{port}", records
    log.removeHandler(records)
    await runner.cleanup()


async def test_rpc_middleware_uses_the_callers_id(rpc_like: tuple[str, Records]) -> None:
    """A given id is echoed and on the log lines; none, or an unsafe one, gets a new one."""
    url, records = rpc_like
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{url}/rpc/send", json={}, headers={HEADER: "r-1"}) as resp:
            assert resp.headers[HEADER] == "r-1"
        async with http.post(f"{url}/rpc/send", json={}) as resp:
            made = resp.headers[HEADER]
        async with http.post(f"{url}/rpc/send", json={}, headers={HEADER: "a b"}) as resp:
            replaced = resp.headers[HEADER]
    assert NEW_ID.fullmatch(made) and NEW_ID.fullmatch(replaced) and made != replaced
    assert records.seen == [("single", "r-1"), ("single", made), ("single", replaced)]


async def test_rpc_batch_calls_log_their_own_ids(rpc_like: tuple[str, Records]) -> None:
    """Each call of a batch logs with its own id; one without (older callers) has the batch's."""
    url, records = rpc_like
    calls: list[dict[str, Any]] = [
        {"method": "a", "request": {}, BATCH_FIELD: "id-a"},
        {"method": "b", "request": {}},
        {"method": "c", "request": {}, BATCH_FIELD: "bad id"},
        {"method": "d", "request": {}, BATCH_FIELD: "id-d"},
    ]
    async with (
        aiohttp.ClientSession() as http,
        http.post(f"{url}/rpc/batch", json={"calls": calls}) as resp,
    ):
        assert (await resp.json())["replies"] == ["a", "b", "c", "d"]
        batch_id = resp.headers[HEADER]
    assert records.seen == [
        ("a", "id-a"),
        ("b", batch_id),
        ("c", batch_id),
        ("d", "id-d"),
        ("batch done", batch_id),
    ]
