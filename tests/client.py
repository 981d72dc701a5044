"""HTTP requests for the tests, each on a connection of its own, read to the end."""

from __future__ import annotations

import http.client
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import orjson


@dataclass(frozen=True)
class Reply:
    status: int
    content_type: str
    raw: bytes
    seconds: float  # from the request to the whole answer read
    headers: dict[str, str] = field(default_factory=dict)  # names in lower case


def exchange(
    host: str,
    port: int | None,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 10.0,
) -> Reply:
    """One request on a fresh connection, closed after the answer."""
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    started = time.monotonic()
    try:
        conn.request(method, path, body=body, headers=dict(headers or {}))
        resp = conn.getresponse()
        raw = resp.read()
        content_type = resp.getheader("Content-Type") or ""
        answer_headers = {name.lower(): value for name, value in resp.getheaders()}
    finally:
        conn.close()
    return Reply(resp.status, content_type, raw, time.monotonic() - started, answer_headers)


def request(
    base: str,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 10.0,
) -> Reply:
    """`exchange` with the server named by a base URL (``http://127.0.0.1:PORT``)."""
    url = urlsplit(base)
    return exchange(url.hostname or "127.0.0.1", url.port, method, path, body, headers, timeout)


def http_call(
    base: str,
    method: str,
    path: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
) -> tuple[int, Any, float]:
    """One request on a fresh connection: (status, decoded JSON body, seconds taken)."""
    reply = request(base, method, path, body, headers, timeout)
    return reply.status, orjson.loads(reply.raw) if reply.raw else None, reply.seconds
