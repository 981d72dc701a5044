"""A second stack on the earlier sorted-set layout, to measure both layouts in one run.

It is the same as the stack under test in every part but the store: a Redis
of its own (AOF, fsync every second), the RPC service run by
``python -m bench.legacy.rpc`` (``pullchat-rpc`` with the sorted-set store of
``bench/legacy``) and a front end of the same settings. Both stacks get the
same preloaded chats in their own layout, and the runs alternate between them,
so a difference between the two is the layout's, not the machine's.

Why a whole second stack rather than only ``redis-benchmark`` of both layouts'
scripts: a layout moves work between the RPC service and Redis (how a page is
read and turned into JSON), so only a full-stack comparison says whether the
total got cheaper; redis-benchmark of both is run too, for Redis's share alone.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path

from bench import stack
from bench.stack import Target, with_checkout_importable
from launcher.procs import Child, rpc_child


def sorted_set_rpc_child(env: Mapping[str, str], log: Path | None) -> Child:
    """The RPC service on the sorted-set store: ``python -m bench.legacy.rpc``."""
    argv = [sys.executable, "-m", "bench.legacy.rpc"]
    return rpc_child(with_checkout_importable(env), log, name="rpc-sorted-set", argv=argv)


def start_sorted_set(logs: Path, http_workers: int | None, rpc_workers: int | None) -> Target:
    """Redis, the sorted-set RPC service and a front end as children, each ready on return."""
    return stack.start(logs, http_workers, rpc_workers, rpc=sorted_set_rpc_child, name="sorted-set")
