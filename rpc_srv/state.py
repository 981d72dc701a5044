"""What an RPC application holds while it runs, each under an aiohttp AppKey.

Nothing here is module-level state: each worker's application has its own
store, limits and lifecycle, set by the app factory (app.py) and, for
draining, by the worker that serves the application (gunicorn_app.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from rpc_srv.notifications import Hub
from rpc_srv.store import MessageStore


@dataclass(slots=True)
class Lifecycle:
    """Whether the worker is draining, and the calls it lets finish with nobody waiting."""

    draining: bool = False
    on_drain: list[Callable[[], None]] = field(default_factory=list)  # run when draining starts
    _background: set[asyncio.Task[Any]] = field(default_factory=set)

    def drain(self) -> None:
        """Start draining: replies tell clients to move on, watch streams are closed."""
        self.draining = True
        for callback in self.on_drain:
            callback()

    def finish_later(self, pending: Awaitable[Any]) -> None:
        """Run a queued call (or a task) to its end in the background, nobody waiting."""
        task = asyncio.ensure_future(pending)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


STORE = web.AppKey("store", MessageStore)
HUB = web.AppKey("hub", Hub)  # new-message hints for the watch streams
TEXT_MAX_BYTES = web.AppKey("text_max_bytes", int)
LIFECYCLE = web.AppKey("lifecycle", Lifecycle)
