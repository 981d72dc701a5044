"""``python -m bench.legacy.rpc``: the RPC service on the sorted-set layout, to compare with.

It is ``pullchat-rpc`` itself (same settings, same gunicorn workers, same
handlers), with the app factory's store class swapped for SortedSetStore
before the workers are forked. Should the factory stop using that name, the
service would start on today's store, whose layout check refuses a store of
sorted sets: a comparison can never silently measure the wrong layout.
"""

from __future__ import annotations

import rpc_srv.app
from bench.legacy.store import SortedSetStore
from rpc_srv.server import main


def run() -> None:
    if not hasattr(rpc_srv.app, "MessageStore"):
        raise SystemExit("bench.legacy.rpc: rpc_srv.app no longer names MessageStore")
    rpc_srv.app.MessageStore = SortedSetStore
    main()


if __name__ == "__main__":
    run()
