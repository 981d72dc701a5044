"""Stores written in the earlier sorted-set layout, for the migration tests.

The messages go in through that version's own store and scripts
(bench/legacy: its send.lua verbatim, called with the arguments it passed),
so a fixture holds exactly what that version wrote: a sorted set per chat and
the idempotency keys of keyed sends. Texts and senders cover what JSON and Lua
patterns could get wrong: quotes, backslashes, control characters, non-ASCII.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass

from bench.legacy.store import SortedSetStore

BATCH = 200
TEXTS = ["", "plain", 'say "hi"', "back\\slash", "tab\tnew\nline\x00\x1f\x7f", "é 😀 中", "/[1]/"]


@dataclass(frozen=True)
class OldMessage:
    send_time: int
    sender: str
    text: str
    client_msg_id: str | None


async def fill(
    url: str, counts: dict[str, int], cluster: bool = False, seed: int = 1, keyed_every: int = 7
) -> dict[str, list[OldMessage]]:
    """Send `counts[chat]` messages to each chat with the earlier version's store.

    Every `keyed_every`-th send carries an idempotency key (``k<n>``). The sends
    are queued BATCH at a time, as a busy RPC service would queue them; each
    chat's list comes back in send_time order.
    """
    rng = random.Random(seed)
    store = SortedSetStore.from_url(url, cluster=cluster, pool_size=16, timeout=5.0)
    filled: dict[str, list[OldMessage]] = {}
    try:
        for chat, count in counts.items():
            plan = [
                (
                    chat.split(":")[n % 2],
                    f"{rng.choice(TEXTS)} {n}" if n % 3 else rng.choice(TEXTS),
                    f"k{n}" if n % keyed_every == 0 else None,
                )
                for n in range(count)
            ]
            sent: list[OldMessage] = []
            for start in range(0, count, BATCH):
                batch = plan[start : start + BATCH]
                queued = [store.send(chat, sender, text, key) for sender, text, key in batch]
                results = await asyncio.gather(*queued)
                sent += [
                    OldMessage(r.send_time, sender, text, key)
                    for r, (sender, text, key) in zip(results, batch, strict=True)
                ]
            filled[chat] = sorted(sent, key=lambda m: m.send_time)
    finally:
        await store.close()
    return filled
