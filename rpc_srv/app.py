"""The RPC service's aiohttp application factory."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from rpc_srv import routes, stream
from rpc_srv.backfill import keep_listing
from rpc_srv.middlewares import errors_middleware, request_id_middleware
from rpc_srv.notifications import Hub
from rpc_srv.settings import Settings
from rpc_srv.state import HUB, LIFECYCLE, STORE, TEXT_MAX_BYTES, Lifecycle
from rpc_srv.store import MessageStore
from rpc_srv.watch import WATCH_STREAMS, close_streams


async def open_store(settings: Settings) -> MessageStore:
    """The store of `settings`; raises StoreNeedsMigration on a store of an earlier layout."""
    return await MessageStore.open(
        settings.redis_url,
        cluster=settings.redis_cluster,
        pool_size=settings.redis_pool_size,
        io_timeout=settings.redis_timeout,
        idempotency_ttl=settings.idempotency_ttl,
        retention_days=settings.retention_days,
    )


def store_ctx(settings: Settings) -> Callable[[web.Application], AsyncIterator[None]]:
    """Open the Redis pool when the server starts and close it when it stops."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        store = await open_store(settings)
        app[STORE] = store
        app[HUB] = hub = Hub(store.redis)
        listing = asyncio.create_task(keep_listing(store))  # see backfill.py
        yield
        listing.cancel()
        await asyncio.gather(listing, return_exceptions=True)
        await hub.close()
        await store.close()

    return ctx


def create_app(settings: Settings | None = None) -> web.Application:
    """Build the RPC application; no I/O happens until it starts."""
    settings = settings or Settings.from_env()
    app = web.Application(
        middlewares=[request_id_middleware, errors_middleware],
        client_max_size=settings.request_max_bytes,
    )
    app[TEXT_MAX_BYTES] = settings.text_max_bytes
    app[LIFECYCLE] = lifecycle = Lifecycle()
    app[WATCH_STREAMS] = set()
    app[stream.BATCH_STREAMS] = stream.Streams()
    app[stream.FRAME_MAX] = settings.request_max_bytes
    lifecycle.on_drain.append(lambda: close_streams(app))
    lifecycle.on_drain.append(lambda: stream.tell_draining(app))

    async def on_shutdown(app: web.Application) -> None:
        close_streams(app)
        await stream.close_streams(app)

    app.on_shutdown.append(on_shutdown)
    app.cleanup_ctx.append(store_ctx(settings))
    routes.register(app)
    return app
