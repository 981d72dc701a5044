"""Sanic's HTTP/1.1 protocol with request deadlines counted from the first byte,
and exact statuses for a request head over its limits.

Sanic measures its request and response timeouts from the last byte received,
so a client trickling a byte at a time would never time out. Here bytes that
belong to a request already under way do not restart the clock: its headers
must arrive within ``REQUEST_TIMEOUT`` of its first byte, and the routes read
the body under the same bound (handlers.read_body).

Sanic answers any head over ``REQUEST_MAX_HEADER_BYTES`` with 413. RFC 9110
has its own statuses for these: a request line over ``REQUEST_MAX_LINE_BYTES``
is a 414, a head (request line and headers) over ``REQUEST_MAX_HEADER_BYTES``
a 431. Either way the rest of the head is never read, so the connection is
closed after the answer.

A handler that waits under a bound of its own (a pull's ``wait``) pauses
Sanic's periodic timeout checks of its connection (``own_deadline``).

Every answer carries the request's id in ``X-Request-Id`` (request_id.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from sanic import Request
from sanic.exceptions import HTTPException, URITooLong
from sanic.http import Http
from sanic.http.constants import Stage
from sanic.server.protocols.http_protocol import HttpProtocol

from contract.request_ids import HEADER
from http_srv.request_id import request_id

LINE_MAX_CONFIG = "REQUEST_MAX_LINE_SIZE"  # the app config's key of the request-line limit
LINE_MAX_DEFAULT = 8192


class HeadersTooLarge(HTTPException):
    """431: the request's header fields are over their limit."""

    status_code = 431
    quiet = True


class LimitedHttp(Http):
    """Checks the request line and the head against their limits before Sanic parses them."""

    __slots__ = ("line_max_bytes",)  # Sanic's Http has slots

    def __init__(self, protocol: HttpProtocol) -> None:
        super().__init__(protocol)  # type: ignore[no-untyped-call]
        # REQUEST_MAX_LINE_BYTES, put in the app's config by create_app
        self.line_max_bytes: int = protocol.app.config.get(LINE_MAX_CONFIG, LINE_MAX_DEFAULT)

    async def http1_request_header(self) -> None:
        buf = self.recv_buffer
        while True:
            line_end = buf.find(b"\r\n")
            if line_end > self.line_max_bytes or (line_end < 0 and len(buf) > self.line_max_bytes):
                raise URITooLong("request line exceeds the size limit")
            head_end = buf.find(b"\r\n\r\n")
            if head_end >= self.HEADER_MAX_SIZE or (
                head_end < 0 and len(buf) > self.HEADER_MAX_SIZE
            ):
                raise HeadersTooLarge("request header fields exceed the size limit")
            if head_end >= 0:
                break
            await self._receive_more()
        await super().http1_request_header()  # type: ignore[no-untyped-call]

    async def http1_response_header(self, data: bytes, end_stream: bool) -> None:
        # Every answer passes here: routes', the error handler's, static files'.
        rid = request_id(self.request)
        if rid is not None and self.response is not None:
            self.response.headers[HEADER] = rid
        await super().http1_response_header(data, end_stream)


class DeadlineProtocol(HttpProtocol):
    HTTP_CLASS = LimitedHttp

    def data_received(self, data: bytes) -> None:
        http = getattr(self, "_http", None)
        under_way = http is not None and (
            http.stage in (Stage.REQUEST, Stage.HANDLER) or bool(http.request_body)
        )
        started = self._time
        super().data_received(data)
        if under_way:
            self._time = started


@contextlib.contextmanager
def own_deadline(request: Request) -> Iterator[None]:
    """Sanic's timeout checks of this connection paused while its handler waits.

    Sanic looks at every connection's deadlines every few seconds (half the
    shortest timeout): for ten thousand parked pulls that was most of the CPU
    they cost while nothing happened. A parked pull is bounded by its own
    ``wait`` (RESPONSE_TIMEOUT is longer), so the checks resume when it ends.
    """
    stream = request.stream
    protocol = getattr(stream, "protocol", None)
    timer = getattr(protocol, "_callback_check_timeouts", None)
    if not isinstance(protocol, HttpProtocol) or timer is None:
        yield
        return
    timer.cancel()
    protocol._callback_check_timeouts = None
    try:
        yield
    finally:
        transport = protocol.transport
        if transport is not None and not transport.is_closing():
            protocol.check_timeouts()  # type: ignore[no-untyped-call]  # now, then every few s
