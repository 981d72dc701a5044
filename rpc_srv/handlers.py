"""The RPC endpoints: check an IDL-shaped request, run it on the store, reply."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from rpc_srv.chat import ChatError, canonicalize, check_client_msg_id, utf8_longer_than
from rpc_srv.protocol import (
    CLIENT_MSG_ID_MAX_CHARS,
    CURSOR_MAX,
    PULL_LIMIT_MAX,
    Code,
)
from rpc_srv.store import MessageStore, StoreUnavailable

PULL_LIMIT_DEFAULT = 10


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


async def send(request: web.Request) -> web.Response:
    """Send(SendRequest{message}) -> SendResponse{code, msg, chat, send_time, duplicate}."""
    body = await read_object(request)
    message = body.get("message")
    if not isinstance(message, dict):
        raise invalid("message must be an object")
    chat = field_chat(message, "chat")
    sender = field_str(message, "sender")
    if sender not in chat.split(":"):
        raise invalid("sender must be one of the chat's two members")
    text = field_str(message, "text")
    check_text(text, request.app[TEXT_MAX_BYTES])
    client_msg_id = read_client_msg_id(body.get("client_msg_id"))
    result = await request.app[STORE].send(chat, sender, text, client_msg_id)
    return reply(
        {
            "code": Code.OK,
            "msg": "success",
            "chat": chat,
            "send_time": result.send_time,
            "duplicate": result.duplicate,
        }
    )


async def pull(request: web.Request) -> web.Response:
    """Pull(PullRequest{chat, cursor, limit, reverse}) -> PullResponse."""
    body = await read_object(request)
    chat = field_chat(body, "chat")
    cursor = field_int(body, "cursor", 0, CURSOR_MAX, 0)
    limit = field_int(body, "limit", 0, PULL_LIMIT_MAX, 0) or PULL_LIMIT_DEFAULT
    reverse = body.get("reverse")
    if reverse is None:
        reverse = False
    elif not isinstance(reverse, bool):
        raise invalid("reverse must be a boolean")
    page = await request.app[STORE].pull(chat, cursor, limit, reverse)
    return reply(
        {
            "code": Code.OK,
            "msg": "success",
            "messages": page.messages,
            "has_more": page.has_more,
            "next_cursor": page.next_cursor,
        }
    )


async def health(request: web.Request) -> web.Response:
    """Code 0 when Redis answers a PING, else UNAVAILABLE."""
    await request.app[STORE].ping()
    return reply({"code": Code.OK, "msg": "ok"})


def error_reply(code: Code, msg: str, status: int = 200) -> web.Response:
    return web.Response(
        body=orjson.dumps({"code": code, "msg": msg}),
        status=status,
        content_type="application/json",
    )


@web.middleware
async def errors_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Map every failure to the JSON reply shape, in one place."""
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except RpcError as exc:
        return error_reply(exc.code, exc.msg)
    except StoreUnavailable as exc:
        return error_reply(Code.UNAVAILABLE, f"store unavailable ({exc})")
    except web.HTTPException as exc:
        return error_reply(Code.INVALID_ARGUMENT, exc.reason, exc.status)
    except Exception:
        request.app.logger.exception("unexpected failure in %s", request.path)
        return error_reply(Code.INTERNAL, "internal error", 500)
