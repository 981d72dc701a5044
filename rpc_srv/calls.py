"""One call of the RPC service: checked by the contract's rules, queued on the store.

A call is checked at once and its store command queued at once; awaiting what
`start_call` returns gives the reply. So the calls of a batch are all queued in
one tick (one Redis pipeline) without a task each. A call never raises to its
caller: a failure becomes the reply of its code.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from aiohttp import web

from contract.requests import FieldError, pull_request, send_request
from contract.wire import Code
from rpc_srv import metrics
from rpc_srv.state import STORE, TEXT_MAX_BYTES
from rpc_srv.store import MessageStore, Page, SendResult, StoreUnavailable

Reply = dict[str, Any]
Pending = Coroutine[Any, Any, Reply]  # a queued call; awaiting it gives the reply


def run_send(store: MessageStore, text_max_bytes: int, params: dict[str, Any]) -> Pending:
    """Send(SendRequest{message, client_msg_id?}) -> SendResponse.

    The reply: code, msg, chat, send_time, duplicate.
    """
    message = params.get("message")
    if not isinstance(message, dict):
        raise FieldError("message", "must be an object")
    fields = {**message, "client_msg_id": params.get("client_msg_id")}
    checked = send_request(fields, text_max_bytes)
    return send_reply(
        checked.chat,
        store.send(checked.chat, checked.sender, checked.text, checked.client_msg_id),
    )


async def send_reply(chat: str, sent: Awaitable[SendResult]) -> Reply:
    result = await sent
    return {
        "code": Code.OK,
        "msg": "success",
        "chat": chat,
        "send_time": result.send_time,
        "duplicate": result.duplicate,
    }


def run_pull(store: MessageStore, _text_max_bytes: int, params: dict[str, Any]) -> Pending:
    """Pull(PullRequest{chat, cursor, limit, reverse}) -> PullResponse."""
    checked = pull_request(params, from_text=False)
    pulled = store.pull(checked.chat, checked.cursor, checked.limit, checked.reverse)
    return pull_reply(pulled, None if checked.reverse else checked.cursor)


async def pull_reply(pulled: Awaitable[Page], forward_from: int | None) -> Reply:
    """The Pull reply; a forward one (`forward_from` its cursor) carries ``tail_cursor``."""
    page = await pulled
    reply = {
        "code": Code.OK,
        "msg": "success",
        "messages": page.wire,  # the page's JSON, embedded as it is
        "has_more": page.has_more,
        "next_cursor": page.next_cursor,
    }
    if forward_from is not None:
        reply["tail_cursor"] = page.last_send_time + 1 if page.count else forward_from
    return reply


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
            raise FieldError("method", "must be send or pull")
        if not isinstance(params, dict):
            raise FieldError("request", "must be an object")
        pending = METHODS[method](app[STORE], app[TEXT_MAX_BYTES], params)
    except Exception as exc:
        return settled(error_body(exc, app.logger))
    return replied(app.logger, pending)


async def settled(result: Reply) -> Reply:
    """A reply known at once (the call failed its checks), awaited like the others."""
    return result


async def replied(logger: logging.Logger, pending: Pending) -> Reply:
    """The queued call's reply, or its error reply: it never raises (but for cancellation)."""
    try:
        return await pending
    except Exception as exc:
        return error_body(exc, logger)


def error_body(exc: Exception, logger: logging.Logger) -> Reply:
    """The reply for a failed call: its code and words, never a stack trace."""
    if isinstance(exc, FieldError):
        return {"code": Code.INVALID_ARGUMENT, "msg": str(exc)}
    if isinstance(exc, StoreUnavailable):
        return {"code": Code.UNAVAILABLE, "msg": f"store unavailable ({exc})"}
    logger.error("unexpected failure", exc_info=exc)
    return {"code": Code.INTERNAL, "msg": "internal error"}


def count_calls(methods: Sequence[Any], replies: Sequence[Reply]) -> None:
    """Count calls by method and reply code: one increment per distinct pair."""
    tally = Counter((str(m)[:8], str(r["code"])) for m, r in zip(methods, replies, strict=True))
    for (method, code), n in tally.items():
        metrics.CALLS.labels(method, code).inc(n)
