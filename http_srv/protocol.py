"""Sanic's HTTP/1.1 protocol with request deadlines counted from the first byte.

Sanic measures its request and response timeouts from the last byte received,
so a client trickling a byte at a time would never time out. Here bytes that
belong to a request already under way do not restart the clock: its headers
must arrive within ``REQUEST_TIMEOUT`` of its first byte, and the routes read
the body under the same bound (routes.read_body).
"""

from __future__ import annotations

from sanic.http.constants import Stage
from sanic.server.protocols.http_protocol import HttpProtocol


class DeadlineProtocol(HttpProtocol):
    def data_received(self, data: bytes) -> None:
        http = getattr(self, "_http", None)
        under_way = http is not None and (
            http.stage in (Stage.REQUEST, Stage.HANDLER) or bool(http.request_body)
        )
        started = self._time
        super().data_received(data)
        if under_way:
            self._time = started
