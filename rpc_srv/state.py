"""What an RPC application holds while it runs, each under an aiohttp AppKey.

Nothing here is module-level state: each worker's application has its own
store, limits and lifecycle, set by the app factory (app.py) and, for
draining, by the worker that serves the application (gunicorn_app.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from rpc_srv.store import MessageStore


@dataclass(slots=True)
class Lifecycle:
    """Whether the worker is draining, and the calls it lets finish with nobody waiting."""

    draining: bool = False
    _background: set[asyncio.Task[Any]] = field(default_factory=set)

    def finish_later(self, pending: Coroutine[Any, Any, Any]) -> None:
        """Run a queued call to its end in the background (its batch was cancelled)."""
        task = asyncio.ensure_future(pending)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


STORE = web.AppKey("store", MessageStore)
TEXT_MAX_BYTES = web.AppKey("text_max_bytes", int)
LIFECYCLE = web.AppKey("lifecycle", Lifecycle)
