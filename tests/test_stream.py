"""The batch stream between the tiers (``/rpc/stream``, rpc_srv/stream.py) and the
front end's use of it (http_srv/rpc_stream.py)."""

from __future__ import annotations

import asyncio
import os
import signal
import uuid
from typing import Any

import aiohttp
import orjson
import pytest

from contract.wire import BATCH_PATH, NDJSON, STREAM_DRAINING, STREAM_PATH
from launcher.stack import Stack
from tests.client import http_call
from tests.stacks import StackFactory
from tests.test_metrics import scrape, total
from tests.test_rpc_crash import child_pids


def new_chat() -> str:
    return f"s{uuid.uuid4().hex[:10]}:t"


def send_call(chat: str, text: str = "hi") -> dict[str, Any]:
    return {"method": "send", "request": {"message": {"chat": chat, "text": text, "sender": "t"}}}


def pull_call(chat: str) -> dict[str, Any]:
    return {"method": "pull", "request": {"chat": chat, "cursor": 0, "limit": 10}}


async def answer(ws: aiohttp.ClientWebSocketResponse) -> tuple[int, list[bytes]]:
    """The next answer on the stream: its id and its replies' JSON."""
    message = await ws.receive(timeout=5)
    assert message.type == aiohttp.WSMsgType.BINARY, message
    head, _, lines = message.data.partition(b"\n")
    return int(head), lines.split(b"\n")


async def test_a_frame_is_answered_as_its_batch(stack: Stack) -> None:
    """Replies in the order of the calls, a bad call failing alone, with the frame's id;
    a pull's reply is byte for byte the NDJSON line /rpc/batch gives."""
    chat = new_chat()
    async with aiohttp.ClientSession() as http, http.ws_connect(stack.rpc_url + STREAM_PATH) as ws:
        await ws.send_bytes(orjson.dumps({"id": 7, "calls": [send_call(chat), {"method": "x"}]}))
        frame_id, replies = await answer(ws)
        assert frame_id == 7
        sent, bad = map(orjson.loads, replies)
        assert sent["code"] == 0 and sent["chat"] == chat and sent["duplicate"] is False
        assert bad["code"] == 1 and bad["msg"].startswith("method")

        await ws.send_bytes(orjson.dumps({"id": 8, "calls": [pull_call(chat)]}))
        _, (pulled,) = await answer(ws)
        body = orjson.dumps({"calls": [pull_call(chat)]})
        async with http.post(
            stack.rpc_url + BATCH_PATH, data=body, headers={"Accept": NDJSON}
        ) as resp:
            assert await resp.read() == pulled
        assert [m["text"] for m in orjson.loads(pulled)["messages"]] == ["hi"]


async def test_frames_run_concurrently_each_answered_once(stack: Stack) -> None:
    chat = new_chat()
    async with aiohttp.ClientSession() as http, http.ws_connect(stack.rpc_url + STREAM_PATH) as ws:
        for i in range(20):
            frame = {"id": i, "calls": [send_call(chat, f"m{i}-{j}") for j in range(5)]}
            await ws.send_bytes(orjson.dumps(frame))
        answers = dict([await answer(ws) for _ in range(20)])
    assert sorted(answers) == list(range(20))
    times = [orjson.loads(r)["send_time"] for replies in answers.values() for r in replies]
    assert len(set(times)) == 100  # every call ran once, each with its own send_time
    for replies in answers.values():  # a frame's calls ran in their order
        mine = [orjson.loads(r)["send_time"] for r in replies]
        assert mine == sorted(mine)


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (b"not json", "a frame must be JSON"),
        (b"[1]", "a frame must be"),
        (b'{"calls": []}', "a frame must be"),
        (b'{"id": -1, "calls": [CALL]}', "a frame must be"),
        (b'{"id": 1.5, "calls": [CALL]}', "a frame must be"),
        (b'{"id": true, "calls": [CALL]}', "a frame must be"),
        (b'{"id": 1, "calls": []}', "calls: must be a list of 1 to 512 calls"),
        (b'{"id": 1, "calls": "x"}', "calls: must be a list"),
    ],
)
async def test_a_broken_frame_closes_the_stream_and_runs_nothing(
    stack: Stack, frame: bytes, reason: str
) -> None:
    chat = new_chat()
    frame = frame.replace(b"CALL", orjson.dumps(send_call(chat)))
    async with aiohttp.ClientSession() as http, http.ws_connect(stack.rpc_url + STREAM_PATH) as ws:
        await ws.send_bytes(frame)
        message = await ws.receive(timeout=5)
        assert message.type == aiohttp.WSMsgType.CLOSE
        assert ws.close_code == 1008
        assert reason in message.extra
    status, pulled, _ = http_call(stack.base, "GET", f"/api/pull?chat={chat}")
    assert status == 200 and pulled["messages"] == []


async def test_a_draining_worker_says_so_and_still_answers(
    redis_url: str, make_stack: StackFactory
) -> None:
    """A worker that drains sends ``draining`` on its streams, answers the batches it
    still gets, and refuses new streams (503), so its front ends move on."""
    s = make_stack(redis_url, RPC_DRAIN_SECONDS="3")
    chat = new_chat()
    async with aiohttp.ClientSession() as http, http.ws_connect(s.rpc_url + STREAM_PATH) as ws:
        os.kill(s.rpc.pid, signal.SIGTERM)
        message = await ws.receive(timeout=5)
        assert (message.type, message.data) == (aiohttp.WSMsgType.TEXT, STREAM_DRAINING)
        await ws.send_bytes(orjson.dumps({"id": 1, "calls": [send_call(chat)]}))
        _, (sent,) = await answer(ws)
        assert orjson.loads(sent)["code"] == 0
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await http.ws_connect(s.rpc_url + STREAM_PATH)
        assert refused.value.status == 503
    await asyncio.to_thread(s.rpc.stop)


async def concurrent_sends(base: str, chat: str, n: int) -> list[int]:
    async with aiohttp.ClientSession() as http:

        async def one(i: int) -> int:
            body = {"chat": chat, "sender": "t", "text": f"m{i}"}
            async with http.post(f"{base}/api/send", json=body) as resp:
                assert resp.status == 200, await resp.text()
                reply = await resp.json()
                return int(reply["send_time"])

        return await asyncio.gather(*(one(i) for i in range(n)))


BATCH_REQUESTS = r'pullchat_rpc_requests_total\{path="/rpc/batch",status="200"\}'
SENDS = r'pullchat_rpc_calls_total\{code="0",method="send"\}'


@pytest.mark.parametrize("streamed", [True, False])
def test_front_end_batches_go_on_one_stream_or_as_requests(
    redis_url: str, make_stack: StackFactory, streamed: bool
) -> None:
    """By default a front-end worker's batches share one stream; with RPC_STREAM=false
    each is a /rpc/batch request. Either way every send is stored once."""
    s = make_stack(redis_url, RPC_STREAM=str(streamed).lower())
    before = scrape(s.rpc_url)
    chat = new_chat()
    times = asyncio.run(concurrent_sends(s.base, chat, 60))
    assert len(set(times)) == 60
    after = scrape(s.rpc_url)
    assert total(after, SENDS) - total(before, SENDS) == 60
    batch_requests = total(after, BATCH_REQUESTS) - total(before, BATCH_REQUESTS)
    assert (batch_requests > 0) is not streamed
    assert total(after, r"pullchat_rpc_batch_streams") == (1 if streamed else 0)
    status, pulled, _ = http_call(s.base, "GET", f"/api/pull?chat={chat}&limit=100")
    assert status == 200 and len(pulled["messages"]) == 60


def test_a_stream_lost_mid_batch_is_a_bounded_error_then_heals(
    redis_url: str, make_stack: StackFactory
) -> None:
    """The RPC service killed with the front end's stream open: 503 at once, not a
    hang; once it is back, a new stream carries the batches."""
    s = make_stack(redis_url)
    chat = new_chat()
    assert len(asyncio.run(concurrent_sends(s.base, chat, 10))) == 10
    for pid in child_pids(s.rpc.pid):  # its worker first, then the master
        os.kill(pid, signal.SIGKILL)
    s.rpc.signal(signal.SIGKILL)
    s.rpc.stop()
    status, reply, seconds = http_call(s.base, "POST", "/api/send", orjson.dumps(
        {"chat": chat, "sender": "t", "text": "lost"}
    ))  # fmt: skip
    assert status == 503 and seconds < 2.5, (status, reply)
    s.rpc.start()
    assert len(asyncio.run(concurrent_sends(s.base, chat, 10))) == 10
    status, pulled, _ = http_call(s.base, "GET", f"/api/pull?chat={chat}&limit=100")
    assert [m["text"] for m in pulled["messages"]].count("lost") == 0
    assert len(pulled["messages"]) == 20
