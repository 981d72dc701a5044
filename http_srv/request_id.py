"""Each public request's id: the client's ``X-Request-Id`` if it is safe, else a new one.

It is decided when Sanic makes the request object (so the 404s, 414s and
431s that no route answers have one too), becomes ``request.id``, is the
current id for the log lines made while the request is handled
(contract.request_ids), goes with its RPC calls (rpc_client.py), and is
returned in the ``X-Request-Id`` header of every answer (deadline_protocol.py). A
head over its limits (414, 431) is not read, so its answer gets a new id.
"""

from __future__ import annotations

from typing import Any

from sanic import Request

from contract.request_ids import HEADER, REQUEST_ID, accept_or_new


class IdRequest(Request):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._id = accept_or_new(self.headers.get(HEADER))
        # The connection's task handles this request from here on, its error
        # answer and access line included: they all see this id.
        REQUEST_ID.set(self._id)


def request_id(request: Request | None) -> str | None:
    """The id of `request` (None before Sanic has made one)."""
    value = getattr(request, "_id", None) if request is not None else None
    return value if isinstance(value, str) else None
