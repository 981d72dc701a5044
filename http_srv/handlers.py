"""The public endpoints' handlers: read and check the parameters, call the RPC service, answer."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from sanic import HTTPResponse, Request
from sanic.http import Http

from contract import prom
from http_srv.context import ctx
from http_srv.deadline_protocol import own_deadline
from http_srv.errors import ApiError
from http_srv.params import (
    chats_params,
    merge_fields,
    parse_body,
    parse_urlencoded,
    pull_params,
    read_params,
    send_params,
    since_param,
    wait_param,
)
from http_srv.waits import ChatsQuery, PullQuery, Query

_PONG = orjson.dumps({"message": "pong"})


async def read_body(request: Request) -> bytes:
    """The whole body, which must arrive within REQUEST_TIMEOUT of the headers.

    The routes stream their bodies so that a client trickling one is cut off
    (408, connection closed) instead of holding its connection indefinitely.
    """
    stream = request.stream
    if not isinstance(stream, Http):
        return request.body
    body_kind: object = stream.request_body  # None, True (Content-Length) or "chunked"
    if not body_kind:
        return request.body  # no body at all
    settings = ctx(request).settings
    # Sanic lifts the size limit for streamed bodies; put it back.
    stream.request_max_size = settings.request_max_bytes
    left = stream.request_bytes_left or 0
    if body_kind is True and len(stream.recv_buffer) >= left and not stream.expecting_continue:
        # Already all here (the usual case): reading cannot wait, so no timer.
        await request.receive_body()  # type: ignore[no-untyped-call]
        return request.body
    try:
        async with asyncio.timeout(settings.request_timeout):
            await request.receive_body()  # type: ignore[no-untyped-call]
    except TimeoutError:
        # Answer, then close instead of reading the rest: no keep-alive and no
        # body left for Sanic to drain.
        stream.keep_alive = False
        stream.request_body = None
        raise ApiError(408, "request body did not arrive in time") from None
    return request.body


async def request_fields(request: Request) -> dict[str, Any]:
    """All fields of a request: JSON body over form over query."""
    body = await read_body(request)
    try:
        query = request.query_string
    except UnicodeDecodeError:
        raise ApiError(400, "query: not valid UTF-8") from None
    query_fields = parse_urlencoded(query, "query") if query else {}
    return merge_fields(query_fields, parse_body(request.headers.get("content-type"), body))


async def ping(request: Request) -> HTTPResponse:
    await read_body(request)  # ignored, but it must arrive in time too
    return HTTPResponse(_PONG, content_type="application/json")


async def send(request: Request) -> HTTPResponse:
    state = ctx(request)
    params = send_params(
        await request_fields(request),
        state.settings.text_max_bytes,
        request.headers.get("idempotency-key"),
    )
    reply = await state.rpc.send(params.chat, params.sender, params.text, params.client_msg_id)
    # The RPC service's Send reply is the answer, field for field: passed on as it is.
    return HTTPResponse(reply, content_type="application/json")


async def pull(request: Request) -> HTTPResponse:
    fields = await request_fields(request)
    params = pull_params(fields)
    wait = wait_param(fields, ctx(request).settings.pull_wait_max)
    # The RPC service's Pull reply is the answer, field for field: passed on as it is.
    return await answer(request, PullQuery(params), wait)


async def chats(request: Request) -> HTTPResponse:
    fields = await request_fields(request)
    params = chats_params(fields)
    wait = wait_param(fields, ctx(request).settings.pull_wait_max)
    return await answer(request, ChatsQuery(params, since_param(fields)), wait)


async def answer(request: Request, query: Query, wait: int) -> HTTPResponse:
    """The query's read; if that is not what it waits for and it may wait, a later one."""
    state = ctx(request)
    mark = state.waits.mark(query.name) if wait else None  # before the read: see waits.py
    page = await query.read(state.rpc)
    if mark is not None and not query.ready(page):
        with own_deadline(request):  # the wait bounds it: no periodic checks meanwhile
            page = await state.waits.wait(query, mark, page, wait)
    return HTTPResponse(page, content_type="application/json")


async def read(request: Request) -> HTTPResponse:
    state = ctx(request)
    params = read_params(await request_fields(request))
    reply = await state.rpc.mark_read(params.chat, params.user, params.send_time)
    return HTTPResponse(reply, content_type="application/json")


async def metrics_text(request: Request) -> HTTPResponse:
    """Prometheus samples of every worker of the front end."""
    await read_body(request)
    return HTTPResponse(prom.render(), headers={"Content-Type": prom.CONTENT_TYPE})
