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

import orjson
from aiohttp import web

from contract import chats_cursor
from contract.chats_cursor import ChatsCursor
from contract.requests import (
    ChatsRequest,
    FieldError,
    chats_request,
    pull_request,
    read_request,
    send_request,
)
from contract.wire import Code
from rpc_srv import metrics
from rpc_srv.state import STORE, TEXT_MAX_BYTES
from rpc_srv.store import MessageStore, Page, ReadState, SendResult, StoreUnavailable

Reply = dict[str, Any]
Pending = Coroutine[Any, Any, Reply]  # a queued call; awaiting it gives the reply


def run_send(store: MessageStore, text_max_bytes: int, params: dict[str, Any]) -> Pending:
    """Send(SendRequest{message, client_msg_id?}) -> SendResponse.

    The reply: code, msg, chat, sender, send_time, duplicate.
    """
    message = params.get("message")
    if not isinstance(message, dict):
        raise FieldError("message", "must be an object")
    fields = {**message, "client_msg_id": params.get("client_msg_id")}
    checked = send_request(fields, text_max_bytes)
    return send_reply(
        checked.chat,
        checked.sender,
        store.send(checked.chat, checked.sender, checked.text, checked.client_msg_id),
    )


async def send_reply(chat: str, sender: str, sent: Awaitable[SendResult]) -> Reply:
    """The Send reply: the public answer of a send, field for field."""
    result = await sent
    return {
        "code": Code.OK,
        "msg": "success",
        "chat": chat,
        "sender": sender,
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


def run_chats(store: MessageStore, _text_max_bytes: int, params: dict[str, Any]) -> Pending:
    """Chats(ChatsRequest{user, limit?, cursor?}) -> ChatsResponse: the public answer."""
    return chats_reply(store, chats_request(params, from_text=False))


async def chats_reply(store: MessageStore, request: ChatsRequest) -> Reply:
    """A page of the list, each chat with its newest message, read cursor and unread count.

    The list gives the page (and the cursor); each chat's own keys give the
    rest, read in one pipeline after the list. A chat that got a message in
    between shows it, and goes first among the page's chats. A chat listed
    whose messages are gone (deleted by hand) is left out of the page.
    """
    page = await store.chats(request.user, request.limit, request.after)
    states = await settled_all([store.read_state(chat, request.user) for chat, _ in page.entries])
    shown: list[tuple[int, dict[str, Any]]] = []
    for (chat, _), state in zip(page.entries, states, strict=True):
        if state.last_message_json is None:
            continue
        first, second = chat.split(":")
        entry = {
            "chat": chat,
            "peer": second if first == request.user else first,
            "last_message": orjson.Fragment(state.last_message_json),
            "unread": state.unread,
            "read_cursor": state.read_cursor,
        }
        shown.append((state.last_send_time, entry))
    shown.sort(key=lambda pair: pair[0], reverse=True)  # stable: ties keep the list's order
    # A message stored since the list was read may show: the client has seen it.
    latest = max([page.latest_activity, *(send_time for send_time, _ in shown)])
    next_cursor = ""
    if page.has_more:
        chat, send_time = page.entries[-1]
        next_cursor = chats_cursor.encode(ChatsCursor(send_time, chat))
    return {
        "code": Code.OK,
        "msg": "success",
        "chats": [entry for _, entry in shown],
        "has_more": page.has_more,
        "next_cursor": next_cursor,
        "latest_activity": latest,
    }


async def settled_all(pending: Sequence[Coroutine[Any, Any, Any]]) -> list[Any]:
    """Every queued call's result, in order; the first failure raised once all settled.

    Cancelled part way, the calls not awaited yet are closed (their commands
    are queued already; the pipeline reads their replies all the same).
    """
    results: list[Any] = []
    failure: BaseException | None = None
    try:
        for call in pending:
            try:
                results.append(await call)
            except Exception as exc:
                results.append(None)
                failure = failure or exc
    finally:
        for call in pending[len(results) :]:
            call.close()
    if failure is not None:
        raise failure
    return results


def run_mark_read(store: MessageStore, _text_max_bytes: int, params: dict[str, Any]) -> Pending:
    """MarkRead(MarkReadRequest{chat, user, send_time}) -> MarkReadResponse: the public answer."""
    checked = read_request(params, from_text=False)
    read = store.read_state(checked.chat, checked.user, checked.send_time)
    return mark_read_reply(checked.chat, checked.user, read)


async def mark_read_reply(chat: str, user: str, read: Awaitable[ReadState]) -> Reply:
    state = await read
    return {
        "code": Code.OK,
        "msg": "success",
        "chat": chat,
        "user": user,
        "read_cursor": state.read_cursor,
        "unread": state.unread,
    }


METHODS: dict[str, Callable[[MessageStore, int, dict[str, Any]], Pending]] = {
    "send": run_send,
    "pull": run_pull,
    "chats": run_chats,
    "mark_read": run_mark_read,
}


def start_call(app: web.Application, method: Any, params: Any) -> Pending:
    """Check one call and queue it; await the result for its reply or its error reply.

    Not counted here: count_calls.
    """
    try:
        if not isinstance(method, str) or method not in METHODS:
            raise FieldError("method", f"must be one of {', '.join(METHODS)}")
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
    tally = Counter(
        (m if isinstance(m, str) and m in METHODS else "unknown", str(r["code"]))
        for m, r in zip(methods, replies, strict=True)
    )
    for (method, code), n in tally.items():
        metrics.CALLS.labels(method, code).inc(n)
