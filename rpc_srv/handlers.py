"""The RPC endpoints: check an IDL-shaped request, run it on the store, reply."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from rpc_srv.chat import ChatError, canonicalize, check_client_msg_id, utf8_longer_than
from rpc_srv.protocol import (
    BATCH_MAX,
    CLIENT_MSG_ID_MAX_CHARS,
    CURSOR_MAX,
    PULL_LIMIT_MAX,
    Code,
)
from rpc_srv.store import MessageStore, StoreUnavailable

PULL_LIMIT_DEFAULT = 10
Reply = dict[str, Any]


class RpcError(Exception):
    """A request that breaks the contract; answered with its code and words."""

    def __init__(self, code: Code, msg: str) -> None:
        super().__init__(msg)
        self.code = code
        self.msg = msg


def reply(body: dict[str, Any]) -> web.Response:
    return web.Response(body=orjson.dumps(body), content_type="application/json")


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


async def run_send(store: MessageStore, text_max_bytes: int, body: dict[str, Any]) -> Reply:
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
    result = await store.send(chat, sender, text, client_msg_id)
    return {
        "code": Code.OK,
        "msg": "success",
        "chat": chat,
        "send_time": result.send_time,
        "duplicate": result.duplicate,
    }


async def run_pull(store: MessageStore, text_max_bytes: int, body: dict[str, Any]) -> Reply:
    """Pull(PullRequest{chat, cursor, limit, reverse}) -> PullResponse."""
    chat = field_chat(body, "chat")
    cursor = field_int(body, "cursor", 0, CURSOR_MAX, 0)
    limit = field_int(body, "limit", 0, PULL_LIMIT_MAX, 0) or PULL_LIMIT_DEFAULT
    reverse = body.get("reverse")
    if reverse is None:
        reverse = False
    elif not isinstance(reverse, bool):
        raise invalid("reverse must be a boolean")
    page = await store.pull(chat, cursor, limit, reverse)
    return {
        "code": Code.OK,
        "msg": "success",
        "messages": page.messages,
        "has_more": page.has_more,
        "next_cursor": page.next_cursor,
    }


METHODS: dict[str, Callable[[MessageStore, int, dict[str, Any]], Awaitable[Reply]]] = {
    "send": run_send,
    "pull": run_pull,
}


async def send(request: web.Request) -> web.Response:
    app = request.app
    return reply(await run_send(app[STORE], app[TEXT_MAX_BYTES], await read_object(request)))


async def pull(request: web.Request) -> web.Response:
    app = request.app
    return reply(await run_pull(app[STORE], app[TEXT_MAX_BYTES], await read_object(request)))


async def batch(request: web.Request) -> web.Response:
    """Several calls in one request: ``{"calls": [{"method", "request"}]}`` ->
    ``{"code", "msg", "replies": [...]}``, one reply (or error reply) per call, in order.

    The calls run concurrently, so their Redis scripts share one pipeline.
    """
    body = await read_object(request)
    calls = body.get("calls")
    if not isinstance(calls, list) or not 0 < len(calls) <= BATCH_MAX:
        raise invalid(f"calls must be a list of 1 to {BATCH_MAX} calls")
    app = request.app
    store, text_max_bytes = app[STORE], app[TEXT_MAX_BYTES]

    async def run(call: Any) -> Reply:
        try:
            if not isinstance(call, dict) or call.get("method") not in METHODS:
                raise invalid("each call needs a method, send or pull")
            params = call.get("request")
            if not isinstance(params, dict):
                raise invalid("each call needs a request object")
            return await METHODS[call["method"]](store, text_max_bytes, params)
        except Exception as exc:
            return error_body(exc, app.logger)

    replies = await asyncio.gather(*(run(call) for call in calls))
    return reply({"code": Code.OK, "msg": "success", "replies": replies})


async def health(request: web.Request) -> web.Response:
    """Code 0 when Redis answers a PING, else UNAVAILABLE."""
    await request.app[STORE].ping()
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
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except web.HTTPException as exc:
        body: Reply = {"code": Code.INVALID_ARGUMENT, "msg": exc.reason}
        status = exc.status
    except Exception as exc:
        body = error_body(exc, request.app.logger)
        status = 500 if body["code"] == Code.INTERNAL else 200
    return web.Response(body=orjson.dumps(body), status=status, content_type="application/json")
