"""The calls of one event-loop tick, sent on together.

Both tiers talk to the next one this way: the front end's RPC client sends
the calls of a tick as one ``/rpc/batch`` request, and the RPC service's
pipeliner sends the Redis commands of a tick as one pipeline. Each call is
added at once (no task per call); at the end of the tick the pending calls go,
in chunks of at most `max_batch`, to `send`, one task per chunk.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar

Call = TypeVar("Call")
Send = Callable[[list[Call]], Coroutine[Any, Any, None]]


class TickCoalescer(Generic[Call]):
    """Collects calls until the end of the tick, then hands them on in chunks.

    `send` settles every call of its chunk (each caller's future gets a result
    or an error) and does not raise: nobody awaits its task but `wait_idle`.
    """

    def __init__(
        self, send: Callable[[list[Call]], Coroutine[Any, Any, None]], max_batch: int
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.send = send
        self.max_batch = max_batch
        self._pending: list[Call] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def add(self, call: Call) -> None:
        """Queue `call` for the end of this tick (the first call of a tick schedules it)."""
        if not self._pending:
            asyncio.get_running_loop().call_soon(self._flush)
        self._pending.append(call)

    async def wait_idle(self) -> None:
        """Wait until every chunk handed on so far is settled (before closing a client)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    def _flush(self) -> None:
        calls, self._pending = self._pending, []
        for start in range(0, len(calls), self.max_batch):
            task = asyncio.create_task(self.send(calls[start : start + self.max_batch]))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
