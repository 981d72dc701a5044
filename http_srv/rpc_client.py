"""The front end's client of the RPC service: one pooled keep-alive session per worker.

Calls made in the same event-loop tick are coalesced (contract.coalescer)
into one batch, so the cost of an exchange is shared by every request in
flight; each caller still gets its own reply or error. A batch goes as a frame
of the worker's one WebSocket to the replica (``/rpc/stream``, rpc_stream.py),
which costs less than an HTTP request each; with ``RPC_STREAM=false``, or to
a replica without that path, it is a ``/rpc/batch`` request (a lone call then
goes to its own endpoint). ``RPC_BATCH=false`` sends every call on its own
endpoint. A batch's replies come one per line (NDJSON), so each caller gets
its reply's JSON without the others being decoded, and a pulled page reaches
the public answer without being decoded at all.

Calls are spread over every RPC replica (see endpoints.py). A request whose
connection could not even be made was never sent, so it goes to the next
replica (and so does one a draining replica refused a stream to). Every
call is bounded by ``RPC_TIMEOUT`` in all. A call that cannot
reach any replica answers 503, one that times out 504. A batch made only of
calls that may run twice (pulls, sends with an idempotency key) is retried
once when a pooled connection turns out to be dead mid-request.

Each call carries the id of the public request it serves (contract.request_ids):
a lone call in the ``X-Request-Id`` header, a batched one in its own
``request_id`` field. A call that fails is logged with that id.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from contract.coalescer import TickCoalescer
from contract.request_ids import BATCH_FIELD, HEADER, REQUEST_ID
from contract.wire import (
    BATCH_PATH,
    CHATS_PATH,
    DRAINING_HEADER,
    MARK_READ_PATH,
    NDJSON,
    OK_REPLY_PREFIX,
    PULL_PATH,
    SEND_PATH,
    STREAM_PATH,
    WATCH_HEARTBEAT,
    WATCH_PATH,
    Code,
)
from http_srv import metrics
from http_srv.endpoints import Endpoint, Endpoints, Resolver, resolve_host
from http_srv.errors import ApiError
from http_srv.rpc_stream import BatchStream

log = logging.getLogger(__name__)

_JSON_HEADERS = {"Content-Type": "application/json"}
# A batch's replies as one line each, so each can be passed on without decoding.
_BATCH_HEADERS = {**_JSON_HEADERS, "Accept": NDJSON}
# A pooled connection the server had closed shows up as one of these.
_STALE = (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)
_METHOD_PATHS = {
    "send": SEND_PATH,
    "pull": PULL_PATH,
    "chats": CHATS_PATH,
    "mark_read": MARK_READ_PATH,
}
# A replica that has no /rpc/stream (an earlier version) is asked again after this long (s).
_NO_STREAM_RETRY = 60.0


@dataclass(slots=True)
class _Call:
    method: str
    payload: dict[str, Any]
    retry_safe: bool
    future: asyncio.Future[bytes]  # the reply's JSON
    request_id: str | None


class RpcClient:
    def __init__(
        self,
        base_url: str,
        timeout: float,
        pool_size: int = 128,
        keepalive: float = 30.0,
        batch: bool = True,
        max_batch: int = 128,
        resolve_interval: float = 5.0,
        resolve: Resolver = resolve_host,
        stream: bool = True,
    ) -> None:
        self.endpoints = Endpoints(base_url.split(","), resolve=resolve)
        self.resolve_interval = resolve_interval
        self.timeout = timeout
        self.pool_size = pool_size
        self.keepalive = keepalive
        self._session: aiohttp.ClientSession | None = None
        self._watch_session: aiohttp.ClientSession | None = None
        self._calls = TickCoalescer(self._dispatch, max_batch if batch else 1)
        self._streamed = stream and batch
        self._streams: dict[str, BatchStream] = {}  # by replica URL
        self._opening: dict[str, asyncio.Lock] = {}
        self._no_stream_until: dict[str, float] = {}
        self._resolver_task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=self.pool_size, keepalive_timeout=self.keepalive, ttl_dns_cache=10
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            skip_auto_headers=("User-Agent",),
        )
        # Watch and batch streams live long: a session of their own, bounded only in connecting.
        self._watch_session = aiohttp.ClientSession(
            timeout=aiohttp.ClientTimeout(total=None, connect=self.timeout),
            skip_auto_headers=("User-Agent",),
        )
        await self.endpoints.refresh()
        metrics.RPC_REPLICAS.set(len(self.endpoints))
        self._resolver_task = asyncio.create_task(self._keep_resolving())

    async def _keep_resolving(self) -> None:
        while True:
            await asyncio.sleep(self.resolve_interval)
            await self.endpoints.refresh()
            metrics.RPC_REPLICAS.set(len(self.endpoints))

    async def close(self) -> None:
        if self._resolver_task is not None:
            self._resolver_task.cancel()
            await asyncio.gather(self._resolver_task, return_exceptions=True)
        await self._calls.wait_idle()
        await asyncio.gather(*(s.close() for s in self._streams.values()))
        self._streams.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None
        if self._watch_session is not None:
            await self._watch_session.close()
            self._watch_session = None

    async def watch(self) -> tuple[aiohttp.ClientWebSocketResponse, Endpoint]:
        """A watch stream (rpc_srv/watch.py) to the first replica that opens one."""
        if self._watch_session is None:
            raise ApiError(503, "RPC client is not started")
        failures = 0
        while True:
            endpoint = self.endpoints.pick()
            try:
                ws = await self._watch_session.ws_connect(
                    endpoint.url + WATCH_PATH, heartbeat=WATCH_HEARTBEAT, max_msg_size=0
                )
            except aiohttp.ClientError:
                self.endpoints.mark_down(endpoint)
                failures += 1
                if failures >= len(self.endpoints):
                    raise
                continue
            return ws, endpoint

    async def send(self, chat: str, sender: str, text: str, client_msg_id: str | None) -> bytes:
        """The Send reply's JSON, the public answer as it is."""
        payload: dict[str, Any] = {"message": {"chat": chat, "text": text, "sender": sender}}
        if client_msg_id is not None:
            payload["client_msg_id"] = client_msg_id
        raw = _passed(await self.call("send", payload, retry_safe=client_msg_id is not None))
        if b',"sender":' in raw:
            return raw
        # A replica of an earlier version leaves the sender out: put it in.
        reply = _decoded(raw)
        return orjson.dumps({**reply, "sender": sender, "duplicate": reply.get("duplicate", False)})

    async def pull(self, chat: str, cursor: int, limit: int, reverse: bool) -> bytes:
        """The Pull reply's JSON as the RPC service encoded it: the public answer as it is."""
        payload = {"chat": chat, "cursor": cursor, "limit": limit, "reverse": reverse}
        return _passed(await self.call("pull", payload, retry_safe=True))

    async def chats(self, user: str, limit: int, cursor: str) -> bytes:
        """The Chats reply's JSON, the public answer as it is (`cursor` "" for the first page)."""
        payload: dict[str, Any] = {"user": user, "limit": limit}
        if cursor:
            payload["cursor"] = cursor
        return _passed(await self.call("chats", payload, retry_safe=True))

    async def mark_read(self, chat: str, user: str, send_time: int) -> bytes:
        """The MarkRead reply's JSON, the public answer as it is (a receipt may run twice)."""
        payload = {"chat": chat, "user": user, "send_time": send_time}
        return _passed(await self.call("mark_read", payload, retry_safe=True))

    async def call(self, method: str, payload: dict[str, Any], retry_safe: bool) -> bytes:
        """Run one RPC and return its reply's JSON, or raise the ApiError a client should see."""
        if self._session is None:
            raise ApiError(503, "RPC client is not started")
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._calls.add(_Call(method, payload, retry_safe, future, REQUEST_ID.get()))
        # _dispatch settles the future within RPC_TIMEOUT of the next tick.
        return await future

    async def _dispatch(self, calls: list[_Call]) -> None:
        """Send calls as one request and hand each caller its reply or error."""
        metrics.RPC_BATCH_CALLS.observe(len(calls))
        try:
            async with asyncio.timeout(self.timeout):
                replies = await self._exchange(calls)
        except Exception as exc:
            error = _transport_error(exc, self.timeout)
            metrics.RPC_ERRORS.labels(str(error.status_code)).inc(len(calls))
            for c in calls:
                log.warning(
                    "RPC %s failed: %s", c.method, error.msg, extra={"request_id": c.request_id}
                )
                if not c.future.done():
                    c.future.set_exception(error)
            return
        for c, reply in zip(calls, replies, strict=True):
            if not c.future.done():
                c.future.set_result(reply)

    async def _exchange(self, calls: list[_Call]) -> list[bytes]:
        """Each call's reply, as JSON, from one replica after another until one
        answers (see the module doc)."""
        stale_retries = 1 if all(c.retry_safe for c in calls) else 0
        unreachable = 0
        while True:
            endpoint = self.endpoints.pick()
            try:
                return await self._exchange_with(endpoint, calls)
            except (aiohttp.ClientConnectorError, aiohttp.WSServerHandshakeError):
                # No connection, or no stream opened: nothing was sent, safe on any replica.
                self.endpoints.mark_down(endpoint)
                unreachable += 1
                if unreachable >= len(self.endpoints):
                    raise
                metrics.RPC_RETRIES.labels("unreachable").inc()
            except _STALE:
                if stale_retries == 0:
                    raise
                stale_retries -= 1
                metrics.RPC_RETRIES.labels("stale connection").inc()

    async def _exchange_with(self, endpoint: Endpoint, calls: list[_Call]) -> list[bytes]:
        stream = await self._stream_to(endpoint) if self._streamed else None
        if stream is not None:
            return _matched(calls, await stream.exchange([_batched(c) for c in calls]))
        if len(calls) == 1:
            call = calls[0]
            headers = _JSON_HEADERS
            if call.request_id is not None:
                headers = {**_JSON_HEADERS, HEADER: call.request_id}
            body = orjson.dumps(call.payload)
            raw, _ = await self._post_to(endpoint, _METHOD_PATHS[call.method], body, headers)
            return [raw]
        body = orjson.dumps({"calls": [_batched(c) for c in calls]})
        raw, media = await self._post_to(endpoint, BATCH_PATH, body, _BATCH_HEADERS)
        if media == NDJSON:
            return _matched(calls, raw.split(b"\n"))  # no JSON holds a raw newline
        # an error answer (or a service that only answers JSON)
        listed = _checked(_decoded(raw)).get("replies")
        replies = [orjson.dumps(r) for r in listed] if isinstance(listed, list) else []
        return _matched(calls, replies)

    async def _stream_to(self, endpoint: Endpoint) -> BatchStream | None:
        """The worker's open batch stream to `endpoint`, opened if need be; None when
        the replica refuses /rpc/stream with a 4xx (its batches go as /rpc/batch requests)."""
        stream = self._streams.get(endpoint.url)
        if stream is not None and stream.usable:
            return stream
        if self._no_stream_until.get(endpoint.url, 0.0) > time.monotonic():
            return None
        lock = self._opening.setdefault(endpoint.url, asyncio.Lock())
        async with lock:  # the batches of a burst share the one stream it opens
            stream = self._streams.get(endpoint.url)
            if stream is not None and stream.usable:
                return stream
            assert self._watch_session is not None
            try:
                ws = await self._watch_session.ws_connect(
                    endpoint.url + STREAM_PATH, heartbeat=WATCH_HEARTBEAT, max_msg_size=0
                )
            except aiohttp.WSServerHandshakeError as exc:
                if not 400 <= exc.status < 500:
                    raise  # a replica that drains (503) or fails: try the next
                # An earlier version, or a proxy that does not upgrade: it answers HTTP.
                self._no_stream_until[endpoint.url] = time.monotonic() + _NO_STREAM_RETRY
                return None
            stream = BatchStream(ws, on_draining=lambda: self.endpoints.mark_down(endpoint))
            self._streams[endpoint.url] = stream
            return stream

    async def _post_to(
        self, endpoint: Endpoint, path: str, body: bytes, headers: dict[str, str]
    ) -> tuple[bytes, str]:
        """The answer's body and media type; a 5xx that is not JSON raises."""
        assert self._session is not None
        async with self._session.post(endpoint.url + path, data=body, headers=headers) as resp:
            if DRAINING_HEADER in resp.headers:
                self.endpoints.mark_down(endpoint)  # it answers this one, then stops
            raw = await resp.read()
            if resp.status >= 500 and not raw.startswith(b"{"):
                raise aiohttp.ClientResponseError(resp.request_info, (), status=resp.status)
            return raw, resp.content_type


def _matched(calls: list[_Call], replies: list[bytes]) -> list[bytes]:
    if len(replies) != len(calls):
        raise ValueError("batch reply does not match its calls")
    return replies


def _batched(call: _Call) -> dict[str, Any]:
    """One call of a /rpc/batch body, with its request's id when it has one."""
    entry: dict[str, Any] = {"method": call.method, "request": call.payload}
    if call.request_id is not None:
        entry[BATCH_FIELD] = call.request_id
    return entry


def _transport_error(exc: Exception, timeout: float) -> ApiError:
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, TimeoutError):
        return ApiError(504, f"RPC service did not answer within {timeout:g} s")
    if isinstance(exc, aiohttp.ClientError):
        return ApiError(503, f"RPC service unreachable ({type(exc).__name__})")
    return ApiError(502, "RPC service gave a malformed reply")


def _passed(raw: bytes) -> bytes:
    """A successful reply as it is, without decoding (see contract.wire.OK_REPLY_PREFIX);
    any other is decoded to raise its error."""
    if raw.startswith(OK_REPLY_PREFIX):
        return raw
    return orjson.dumps(_checked(_decoded(raw)))


def _decoded(raw: bytes) -> dict[str, Any]:
    """One reply's JSON object; anything else is a malformed reply (502)."""
    reply = orjson.loads(raw)
    if not isinstance(reply, dict):
        raise ApiError(502, "RPC service gave a malformed reply")
    return reply


def _checked(reply: dict[str, Any]) -> dict[str, Any]:
    """The reply if its code is OK, else the ApiError that matches its code."""
    code = reply.get("code")
    if code == Code.OK:
        return reply
    msg = str(reply.get("msg", ""))
    if code == Code.INVALID_ARGUMENT:
        raise ApiError(400, msg)
    if code == Code.UNAVAILABLE:
        raise ApiError(503, f"message store unavailable: {msg}")
    raise ApiError(502, "RPC service failed")
