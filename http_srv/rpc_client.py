"""The front end's client of the RPC service: one pooled keep-alive session per worker.

Every call is bounded by ``RPC_TIMEOUT`` in all (retry included). A call that
cannot reach the service answers 503, one that times out 504; a pull, or a
send that carries an idempotency key, is retried once on a fresh connection
when a pooled connection turns out to be dead.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson

from http_srv.errors import ApiError
from rpc_srv.protocol import PULL_PATH, SEND_PATH, Code

_JSON_HEADERS = {"Content-Type": "application/json"}
# A pooled connection the server had closed shows up as one of these.
_STALE = (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)


class RpcClient:
    def __init__(
        self, base_url: str, timeout: float, pool_size: int = 128, keepalive: float = 30.0
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.pool_size = pool_size
        self.keepalive = keepalive
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=self.pool_size, keepalive_timeout=self.keepalive, ttl_dns_cache=10
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=self.timeout),
            json_serialize=lambda obj: orjson.dumps(obj).decode(),
            skip_auto_headers=("User-Agent",),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(
        self, chat: str, sender: str, text: str, client_msg_id: str | None
    ) -> dict[str, Any]:
        payload: dict[str, Any] = {"message": {"chat": chat, "text": text, "sender": sender}}
        if client_msg_id is not None:
            payload["client_msg_id"] = client_msg_id
        return await self.call(SEND_PATH, payload, retry_safe=client_msg_id is not None)

    async def pull(self, chat: str, cursor: int, limit: int, reverse: bool) -> dict[str, Any]:
        payload = {"chat": chat, "cursor": cursor, "limit": limit, "reverse": reverse}
        return await self.call(PULL_PATH, payload, retry_safe=True)

    async def call(self, path: str, payload: Any, retry_safe: bool) -> dict[str, Any]:
        """POST one RPC and return its reply, or raise the ApiError a client should see."""
        if self._session is None:
            raise ApiError(503, "RPC client is not started")
        body = orjson.dumps(payload)
        url = self.base_url + path
        try:
            async with asyncio.timeout(self.timeout):
                reply = await self._post(url, body, retry_safe)
        except TimeoutError:
            raise ApiError(504, f"RPC service did not answer within {self.timeout:g} s") from None
        except aiohttp.ClientError as exc:
            raise ApiError(503, f"RPC service unreachable ({type(exc).__name__})") from None
        code = reply.get("code")
        if code == Code.OK:
            return reply
        msg = str(reply.get("msg", ""))
        if code == Code.INVALID_ARGUMENT:
            raise ApiError(400, msg)
        if code == Code.UNAVAILABLE:
            raise ApiError(503, f"message store unavailable: {msg}")
        raise ApiError(502, "RPC service failed")

    async def _post(self, url: str, body: bytes, retry_safe: bool) -> dict[str, Any]:
        assert self._session is not None
        attempts = 2 if retry_safe else 1
        for attempt in range(attempts):
            try:
                async with self._session.post(url, data=body, headers=_JSON_HEADERS) as resp:
                    raw = await resp.read()
                    if resp.status >= 500 and not raw.startswith(b"{"):
                        raise aiohttp.ClientResponseError(resp.request_info, (), status=resp.status)
                    reply = orjson.loads(raw)
                    if not isinstance(reply, dict):
                        raise ValueError("RPC reply is not an object")
                    return reply
            except _STALE:
                if attempt + 1 == attempts:
                    raise
            except ValueError:
                raise ApiError(502, "RPC service gave a malformed reply") from None
        raise AssertionError("unreachable")
