"""The RPC endpoints: check an IDL-shaped request, run it on the store, reply."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

import orjson
from aiohttp import web
from redis.exceptions import RedisError

from contract import prom
from contract.chat import ChatError, canonicalize, check_client_msg_id, utf8_longer_than
from contract.request_ids import awaited_as, batch_call_id, using
from contract.wire import (
    BATCH_MAX,
    CLIENT_MSG_ID_MAX_CHARS,
    CURSOR_MAX,
    DRAINING_HEADER,
    PULL_LIMIT_DEFAULT,
    PULL_LIMIT_MAX,
    Code,
)
from rpc_srv import metrics
from rpc_srv.store import MessageStore, Page, SendResult, StoreUnavailable

Reply = dict[str, Any]
Pending = Coroutine[Any, Any, Reply]  # a queued call; awaiting it gives the reply


class DrainState:
    """Whether this worker is shutting down (set by the server on SIGTERM)."""

    draining = False


DRAIN = DrainState()


class RpcError(Exception):
    """A request that breaks the contract; answered with its code and words."""

    def __init__(self, code: Code, msg: str) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg


def reply(body: dict[str, Any], status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")


def invalid(msg: str) -> RpcError:
    return RpcError(Code.INVALID_ARGUMENT, msg)


async def read_object(request: web.Request) -> dict[str, Any]:
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError as exc:
        raise invalid(f"body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise invalid("body must be a JSON object")
    return body


def field_str(obj: dict[str, Any], name: str) -> str:
    value = obj.get(name)
    if not isinstance(value, str):
        raise invalid(f"{name} must be a string")
    return value


def field_int(obj: dict[str, Any], name: str, lo: int, hi: int, default: int) -> int:
    value = obj.get(name, default)
    if value is None:
        return default
    if type(value) is not int or not lo <= value <= hi:
        raise invalid(f"{name} must be an integer from {lo} to {hi}")
    return value


def field_chat(obj: dict[str, Any], name: str) -> str:
    try:
        return canonicalize(field_str(obj, name))
    except ChatError as exc:
        raise invalid(f"{name}: {exc}") from None


STORE = web.AppKey("store", MessageStore)
TEXT_MAX_BYTES = web.AppKey("text_max_bytes", int)


def check_text(text: str, limit: int) -> None:
    if utf8_longer_than(text, limit):
        raise invalid(f"text must be at most {limit} bytes of UTF-8")


def read_client_msg_id(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise invalid("client_msg_id must be a string")
    try:
        return check_client_msg_id(value, CLIENT_MSG_ID_MAX_CHARS)
    except ChatError as exc:
        raise invalid(f"client_msg_id {exc}") from None


def run_send(store: MessageStore, text_max_bytes: int, body: dict[str, Any]) -> Pending:
    """Send(SendRequest{message}) -> SendResponse{code, msg, chat, send_time, duplicate}."""
    message = body.get("message")
    if not isinstance(message, dict):
        raise invalid("message must be an object")
    chat = field_chat(message, "chat")
    sender = field_str(message, "sender")
    if sender not in chat.split(":"):
        raise invalid("sender must be one of the chat's two members")
    text = field_str(message, "text")
    check_text(text, text_max_bytes)
    client_msg_id = read_client_msg_id(body.get("client_msg_id"))
    return send_reply(chat, store.send(chat, sender, text, client_msg_id))


async def send_reply(chat: str, sent: Awaitable[SendResult]) -> Reply:
    result = await sent
    return {
        "code": Code.OK,
        "msg": "success",
        "chat": chat,
        "send_time": result.send_time,
        "duplicate": result.duplicate,
    }


def run_pull(store: MessageStore, text_max_bytes: int, body: dict[str, Any]) -> Pending:
    """Pull(PullRequest{chat, cursor, limit, reverse}) -> PullResponse."""
    chat = field_chat(body, "chat")
    cursor = field_int(body, "cursor", 0, CURSOR_MAX, 0)
    limit = field_int(body, "limit", 0, PULL_LIMIT_MAX, 0) or PULL_LIMIT_DEFAULT
    reverse = body.get("reverse")
    if reverse is None:
        reverse = False
    elif not isinstance(reverse, bool):
        raise invalid("reverse must be a boolean")
    return pull_reply(store.pull(chat, cursor, limit, reverse))


async def pull_reply(pulled: Awaitable[Page]) -> Reply:
    page = await pulled
    return {
        "code": Code.OK,
        "msg": "success",
        "messages": page.wire,  # the page's JSON, embedded as it is
        "has_more": page.has_more,
        "next_cursor": page.next_cursor,
    }


# Each checks its call at once and queues its store command; awaiting what it
# returns gives the reply. So the calls of a batch are all queued in one tick
# (one Redis pipeline) without a task each.
METHODS: dict[str, Callable[[MessageStore, int, dict[str, Any]], Pending]] = {
    "send": run_send,
    "pull": run_pull,
}


def start_call(app: web.Application, method: Any, params: Any) -> Pending:
    """Check one call and queue it; await the result for its reply or its error reply.

    Not counted here: count_calls.
    """
    try:
        if not isinstance(method, str) or method not in METHODS:
            raise invalid("each call needs a method, send or pull")
        if not isinstance(params, dict):
            raise invalid("each call needs a request object")
        pending = METHODS[method](app[STORE], app[TEXT_MAX_BYTES], params)
    except Exception as exc:
        return settled(error_body(exc, app.logger))
    return replied(app, pending)


_BACKGROUND: set[asyncio.Task[Reply]] = set()


def settle_later(pending: Pending) -> None:
    """Let a queued call finish with nobody waiting (its batch was cancelled)."""
    task = asyncio.ensure_future(pending)
    _BACKGROUND.add(task)
    task.add_done_callback(_BACKGROUND.discard)


async def settled(result: Reply) -> Reply:
    """A reply known at once (the call failed its checks), awaited like the others."""
    return result


async def replied(app: web.Application, pending: Pending) -> Reply:
    """The queued call's reply, or its error reply: it never raises (but for cancellation)."""
    try:
        return await pending
    except Exception as exc:
        return error_body(exc, app.logger)


def count_calls(methods: Sequence[Any], replies: Sequence[Reply]) -> None:
    """Count calls by method and reply code: one increment per distinct pair."""
    tally = Counter((str(m)[:8], str(r["code"])) for m, r in zip(methods, replies, strict=True))
    for (method, code), n in tally.items():
        metrics.CALLS.labels(method, code).inc(n)


async def single(request: web.Request, method: str) -> web.Response:
    result = await start_call(request.app, method, await read_object(request))
    count_calls((method,), (result,))
    return reply(result, 500 if result["code"] == Code.INTERNAL else 200)


async def send(request: web.Request) -> web.Response:
    return await single(request, "send")


async def pull(request: web.Request) -> web.Response:
    return await single(request, "pull")


async def batch(request: web.Request) -> web.Response:
    """Several calls in one request: ``{"calls": [{"method", "request"}]}`` ->
    ``{"code", "msg", "replies": [...]}``, one reply (or error reply) per call, in order.

    Every call is queued before any is awaited, so their Redis scripts share one
    pipeline.
    """
    body = await read_object(request)
    calls = body.get("calls")
    if not isinstance(calls, list) or not 0 < len(calls) <= BATCH_MAX:
        raise invalid(f"calls must be a list of 1 to {BATCH_MAX} calls")
    metrics.BATCH_CALLS.observe(len(calls))
    app = request.app
    methods = [c.get("method") if isinstance(c, dict) else None for c in calls]
    ids = [batch_call_id(c) for c in calls]
    started = []
    for m, c, rid in zip(methods, calls, ids, strict=True):
        with using(rid):  # log lines of each call carry the id of the request it serves
            started.append(start_call(app, m, c.get("request") if isinstance(c, dict) else None))
    replies: list[Reply] = []
    try:
        for pending, rid in zip(started, ids, strict=True):
            # each settles by itself: awaiting in order costs nothing
            replies.append(await awaited_as(rid, pending))
    finally:
        # Cancelled part way: the call being awaited went with the handler; the
        # ones after it still settle (they never raise), in the background.
        for pending in started[len(replies) + 1 :]:
            settle_later(pending)
    count_calls(methods, replies)
    return reply({"code": Code.OK, "msg": "success", "replies": replies})


async def metrics_text(request: web.Request) -> web.Response:
    """Prometheus samples of every worker of this service."""
    return web.Response(body=prom.render(), headers={"Content-Type": prom.CONTENT_TYPE})


async def health(request: web.Request) -> web.Response:
    """200 and code 0 when Redis answers a PING; else 503, UNAVAILABLE and the reason.

    A Redis that refuses us (protected mode, a wrong password, a server that is
    loading) reads as what it is, not as an internal error.
    """
    if DRAIN.draining:
        return reply({"code": Code.UNAVAILABLE, "msg": "draining"}, 503)
    try:
        await request.app[STORE].ping()
    except StoreUnavailable as exc:
        return reply({"code": Code.UNAVAILABLE, "msg": f"store unavailable ({exc})"}, 503)
    except RedisError as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return reply({"code": Code.UNAVAILABLE, "msg": f"store refused us: {reason}"}, 503)
    return reply({"code": Code.OK, "msg": "ok"})


def error_body(exc: Exception, logger: logging.Logger) -> Reply:
    """The reply for a failed call: its code and words, never a stack trace."""
    if isinstance(exc, RpcError):
        return {"code": exc.code, "msg": exc.msg}
    if isinstance(exc, StoreUnavailable):
        return {"code": Code.UNAVAILABLE, "msg": f"store unavailable ({exc})"}
    logger.error("unexpected failure", exc_info=exc)
    return {"code": Code.INTERNAL, "msg": "internal error"}


@web.middleware
async def errors_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Map every failure to the JSON reply shape, in one place."""
    started = time.perf_counter()
    try:
        response: web.StreamResponse = await handler(request)
    except web.HTTPException as exc:
        body: Reply = {"code": Code.INVALID_ARGUMENT, "msg": exc.reason}
        response = web.Response(
            body=orjson.dumps(body), status=exc.status, content_type="application/json"
        )
    except Exception as exc:
        body = error_body(exc, request.app.logger)
        status = 500 if body["code"] == Code.INTERNAL else 200
        response = web.Response(
            body=orjson.dumps(body), status=status, content_type="application/json"
        )
    resource = request.match_info.route.resource
    path = resource.canonical if resource is not None else "unmatched"
    metrics.REQUEST_SECONDS.labels(path).observe(time.perf_counter() - started)
    metrics.REQUESTS.labels(path, str(response.status)).inc()
    if DRAIN.draining:
        response.headers[DRAINING_HEADER] = "1"
        response.force_close()
    return response
