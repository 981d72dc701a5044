"""A small closed-loop load generator for fault tests: N keep-alive clients sending.

Each client sends unique texts and records every answer, so a test can check
afterwards what was acknowledged, what failed, how fast, and what is stored.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson


@dataclass
class Outcome:
    chat: str
    text: str
    status: int  # 0 when no HTTP answer came at all
    started: float  # time.monotonic()
    elapsed: float
    body: Any


@dataclass
class SendLoad:
    base: str
    chats: list[str]
    clients: int = 16
    outcomes: list[Outcome] = field(default_factory=list)
    _stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def _client(self, n: int) -> None:
        timeout = aiohttp.ClientTimeout(total=10)
        async with aiohttp.ClientSession(self.base, timeout=timeout) as session:
            i = 0
            while not self._stop.is_set():
                chat = self.chats[(n + i) % len(self.chats)]
                text = f"c{n}-m{i}"
                sender = chat.split(":")[0]
                payload = orjson.dumps({"chat": chat, "sender": sender, "text": text})
                started = time.monotonic()
                try:
                    async with session.post(
                        "/api/send", data=payload, headers={"Content-Type": "application/json"}
                    ) as resp:
                        status, raw = resp.status, await resp.read()
                        body = orjson.loads(raw) if raw else None
                except (aiohttp.ClientError, TimeoutError) as exc:
                    status, body = 0, repr(exc)
                self.outcomes.append(
                    Outcome(chat, text, status, started, time.monotonic() - started, body)
                )
                i += 1
                if status != 200:
                    await asyncio.sleep(0.01)  # an outage is no reason to spin

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[SendLoad]:
        """The load runs inside the block and is stopped (and awaited) when it ends."""
        stop = asyncio.Event()
        runner = asyncio.create_task(self.run_until(stop))
        try:
            yield self
        finally:
            stop.set()
            await runner

    async def run_until(self, stop: asyncio.Event) -> None:
        self._stop = stop
        await asyncio.gather(*(self._client(n) for n in range(self.clients)))

    def acked(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status == 200]

    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.status != 200]
