"""The earlier layout, one sorted set per chat, kept to compare with and to migrate from.

``send.lua`` and ``pull.lua`` are that version's scripts, verbatim; ``store.py``
calls them with the arguments that version's store passed; ``rpc.py`` runs the
RPC service on that store. Used by the benchmark's side-by-side runs and by the
migration tests, which fill a store with it; never by the product.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent


def script(name: str) -> str:
    """The earlier layout's script `name` (send.lua or pull.lua)."""
    return (HERE / name).read_text(encoding="utf-8")
