"""Request ids: one id per public request, carried to the RPC service and into log lines.

The front end takes ``X-Request-Id`` from the client when it is a safe token
(at most ``MAX_CHARS`` of letters, digits and ``-_.:=+/@``), else makes one,
and sends it with each RPC call: as this header on a lone call, as the
``request_id`` field of each call in a batch (calls of several requests share
one batch). Both are optional on the wire: a call without one still works.

While a request (or one call of a batch) is handled, its id is in
``REQUEST_ID``, and ``RequestIdFilter`` puts it on every log record made
meanwhile, so the log formatters can show it.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Awaitable
from contextvars import ContextVar
from typing import Any, TypeVar

HEADER = "X-Request-Id"
BATCH_FIELD = "request_id"
MAX_CHARS = 128
_SAFE = re.compile(rf"[A-Za-z0-9\-_.:=+/@]{{1,{MAX_CHARS}}}")

REQUEST_ID: ContextVar[str | None] = ContextVar("request_id", default=None)

T = TypeVar("T")


def new_id() -> str:
    """32 random hex digits (a uuid4's length and randomness, without building a UUID)."""
    return os.urandom(16).hex()


def is_valid(value: object) -> bool:
    """Whether a client's id can be used as it is (logged, echoed in a header)."""
    return isinstance(value, str) and _SAFE.fullmatch(value) is not None


def accept_or_new(value: object) -> str:
    """The given id if it is safe, else a new one."""
    return value if isinstance(value, str) and is_valid(value) else new_id()


class using:
    """Log lines made inside this block carry `request_id`.

    A class rather than a generator context manager: it is entered once per
    call of every batch.
    """

    __slots__ = ("_request_id", "_token")

    def __init__(self, request_id: str | None) -> None:
        self._request_id = request_id

    def __enter__(self) -> None:
        self._token = REQUEST_ID.set(self._request_id)

    def __exit__(self, *exc: object) -> None:
        REQUEST_ID.reset(self._token)


async def awaited_as(request_id: str | None, pending: Awaitable[T]) -> T:
    """Await `pending` with `request_id` as the current id (one call of a batch)."""
    with using(request_id):
        return await pending


def batch_call_id(call: Any) -> str | None:
    """The id of one call of a batch: its ``request_id`` if it is a safe one, else the batch's."""
    value = call.get(BATCH_FIELD) if isinstance(call, dict) else None
    return value if isinstance(value, str) and is_valid(value) else REQUEST_ID.get()


class RequestIdFilter(logging.Filter):
    """Puts the current request id (or None) on each record as ``request_id``.

    An id given explicitly (``extra={"request_id": ...}``) is kept.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = REQUEST_ID.get()
        return True
