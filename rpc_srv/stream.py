"""``GET /rpc/stream``: a WebSocket carrying batches, one per front-end worker and replica.

It runs the calls ``/rpc/batch`` runs, without an HTTP request and answer per
batch: a batch costs a frame each way. Frames:

- front end -> service: ``{"id": n, "calls": [...]}``, the calls as
  ``/rpc/batch`` takes them, `n` a non-negative integer the front end picks
  to match the answer;
- service -> front end: the id's digits, a newline, then the batch's replies
  one per line (NDJSON), in the order of its calls. Batches run concurrently,
  so answers come as their batches finish, not in the order they were sent;
- service -> front end: the text frame ``draining``: the worker is shutting
  down. It still answers every batch it receives until it stops, but new ones
  should go to another replica where there is one. When it stops it answers
  the batches under way, then closes the stream (1001).

A frame that breaks these rules closes the stream (1008, policy violation)
with the reason. A stream that closes before a batch is answered tells its
caller nothing about that batch's calls: like a connection lost mid-request.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable

import orjson
from aiohttp import WSCloseCode, WSMsgType, web

from contract.wire import STREAM_DRAINING, WATCH_HEARTBEAT, Code
from rpc_srv import metrics
from rpc_srv.calls import Reply
from rpc_srv.handlers import as_lines, reply, run_batch
from rpc_srv.state import LIFECYCLE

Streams = dict[web.WebSocketResponse, set[asyncio.Task[None]]]  # each and its batches under way
BATCH_STREAMS = web.AppKey("batch_streams", Streams)
STOP_WAIT = 5.0  # seconds a stopping worker waits for the batches under way
FRAME_MAX = web.AppKey("stream_frame_max", int)  # bytes in one frame: RPC_REQUEST_MAX_BYTES


async def stream(request: web.Request) -> web.StreamResponse:
    app = request.app
    if app[LIFECYCLE].draining:
        # Its front ends are to move on: a stream opened now would only be told so.
        return reply({"code": Code.UNAVAILABLE, "msg": "draining"}, 503)
    ws = web.WebSocketResponse(heartbeat=WATCH_HEARTBEAT, max_msg_size=app[FRAME_MAX])
    await ws.prepare(request)
    streams = app[BATCH_STREAMS]
    streams[ws] = answering = set()
    metrics.BATCH_STREAMS.inc()
    try:
        async for message in ws:
            if message.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                break
            try:
                frame_id, replies = _started(app, message.data)
            except ValueError as exc:  # FieldError is one
                await ws.close(code=WSCloseCode.POLICY_VIOLATION, message=str(exc)[:120].encode())
                break
            task = asyncio.create_task(_answer(ws, frame_id, replies))
            answering.add(task)
            task.add_done_callback(answering.discard)
    finally:
        streams.pop(ws, None)
        for task in answering:  # still running with the stream closed: it ends anyway
            app[LIFECYCLE].finish_later(task)
        metrics.BATCH_STREAMS.dec()
    return ws


def _started(app: web.Application, data: str | bytes) -> tuple[bytes, Awaitable[list[Reply]]]:
    """One frame's id and its batch, queued (see run_batch); a broken frame raises."""
    try:
        frame = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"a frame must be JSON ({exc})") from None
    frame_id = frame.get("id") if isinstance(frame, dict) else None
    if type(frame_id) is not int or frame_id < 0:
        raise ValueError('a frame must be {"id": n, "calls": [...]} with n >= 0')
    return b"%d" % frame_id, run_batch(app, frame.get("calls"))


async def _answer(
    ws: web.WebSocketResponse, frame_id: bytes, replies: Awaitable[list[Reply]]
) -> None:
    lines = as_lines(await replies)
    if ws.closed:
        return  # nobody to tell: the calls ran all the same
    with contextlib.suppress(ConnectionError):
        await ws.send_bytes(frame_id + b"\n" + lines)


def tell_draining(app: web.Application) -> None:
    """Tell every batch stream of this worker that it drains: their clients move on."""
    streams: Streams = app[BATCH_STREAMS]
    for ws in list(streams):
        if not ws.closed:
            app[LIFECYCLE].finish_later(_say(ws, STREAM_DRAINING))


async def _say(ws: web.WebSocketResponse, text: str) -> None:
    with contextlib.suppress(ConnectionError):
        await ws.send_str(text)


async def close_streams(app: web.Application) -> None:
    """Answer the batches under way (up to STOP_WAIT), then close every stream (it stops)."""
    open_now: Streams = app[BATCH_STREAMS]
    streams = dict(open_now)
    under_way = set().union(*streams.values())
    if under_way:
        await asyncio.wait(under_way, timeout=STOP_WAIT)
    await asyncio.gather(*(ws.close(code=WSCloseCode.GOING_AWAY) for ws in streams))
