"""The RPC service's request handlers: read a request, run its call(s), answer."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import orjson
from aiohttp import web
from redis.exceptions import RedisError

from contract import prom
from contract.request_ids import awaited_as, batch_call_id, using
from contract.requests import FieldError
from contract.wire import BATCH_MAX, NDJSON, Code
from rpc_srv import metrics
from rpc_srv.calls import Pending, Reply, count_calls, start_call
from rpc_srv.state import LIFECYCLE, STORE
from rpc_srv.store import StoreUnavailable


def reply(body: Reply, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


async def read_object(request: web.Request) -> dict[str, Any]:
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        raise FieldError("body", f"not valid JSON ({exc})") from None
    if not isinstance(body, dict):
        raise FieldError("body", "must be a JSON object")
    return body


async def single(request: web.Request, method: str) -> web.Response:
    result = await start_call(request.app, method, await read_object(request))
    count_calls((method,), (result,))
    return reply(result, 500 if result["code"] == Code.INTERNAL else 200)


async def send(request: web.Request) -> web.Response:
    return await single(request, "send")


async def pull(request: web.Request) -> web.Response:
    return await single(request, "pull")


async def chats(request: web.Request) -> web.Response:
    return await single(request, "chats")


async def mark_read(request: web.Request) -> web.Response:
    return await single(request, "mark_read")


async def batch(request: web.Request) -> web.Response:
    """Several calls in one request: ``{"calls": [{"method", "request"}]}`` ->
    ``{"code", "msg", "replies": [...]}``, one reply (or error reply) per call, in order;
    or, when the caller accepts NDJSON, the replies alone, one per line.
    """
    body = await read_object(request)
    replies = await run_batch(request.app, body.get("calls"))
    if NDJSON in request.headers.get("Accept", ""):
        return web.Response(body=as_lines(replies), content_type=NDJSON)
    return reply({"code": Code.OK, "msg": "success", "replies": replies})


def run_batch(app: web.Application, calls: Any) -> Awaitable[list[Reply]]:
    """The replies of a batch's calls, in order (a batch of /rpc/batch or /rpc/stream).

    Every call is queued before this returns, so the calls of a batch (and of
    every batch read in the same tick) share one Redis pipeline. A list that
    is not 1 to BATCH_MAX calls raises FieldError at once.
    """
    if not isinstance(calls, list) or not 0 < len(calls) <= BATCH_MAX:
        raise FieldError("calls", f"must be a list of 1 to {BATCH_MAX} calls")
    metrics.BATCH_CALLS.observe(len(calls))
    methods = [c.get("method") if isinstance(c, dict) else None for c in calls]
    ids = [batch_call_id(c) for c in calls]
    started = []
    for m, c, rid in zip(methods, calls, ids, strict=True):
        with using(rid):  # log lines of each call carry the id of the request it serves
            started.append(start_call(app, m, c.get("request") if isinstance(c, dict) else None))
    return _replies(app, methods, ids, started)


async def _replies(
    app: web.Application, methods: list[Any], ids: list[str | None], started: list[Pending]
) -> list[Reply]:
    replies: list[Reply] = []
    try:
        for pending, rid in zip(started, ids, strict=True):
            # each settles by itself: awaiting in order costs nothing
            replies.append(await awaited_as(rid, pending))
    finally:
        # Cancelled part way: the call being awaited went with the handler; the
        # ones after it still settle (they never raise), in the background.
        for pending in started[len(replies) + 1 :]:
            app[LIFECYCLE].finish_later(pending)
    count_calls(methods, replies)
    return replies


def as_lines(replies: list[Reply]) -> bytes:
    """Replies as NDJSON: one JSON object per line, no newline at the end."""
    return b"\n".join(map(orjson.dumps, replies))


async def metrics_text(request: web.Request) -> web.Response:
    """Prometheus samples of every worker of this service."""
    return web.Response(body=prom.render(), headers={"Content-Type": prom.CONTENT_TYPE})


async def health(request: web.Request) -> web.Response:
    """200 and code 0 when Redis answers a PING; else 503, UNAVAILABLE and the reason.

    A Redis that refuses us (protected mode, a wrong password, a server that is
    loading) reads as what it is, not as an internal error.
    """
    if request.app[LIFECYCLE].draining:
        return reply({"code": Code.UNAVAILABLE, "msg": "draining"}, 503)
    try:
        await request.app[STORE].ping()
    except StoreUnavailable as exc:
        return reply({"code": Code.UNAVAILABLE, "msg": f"store unavailable ({exc})"}, 503)
    except RedisError as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return reply({"code": Code.UNAVAILABLE, "msg": f"store refused us: {reason}"}, 503)
    return reply({"code": Code.OK, "msg": "ok"})
