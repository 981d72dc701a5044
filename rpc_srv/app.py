"""The RPC service's aiohttp application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from aiohttp import web

from contract.wire import BATCH_PATH, HEALTH_PATH, METRICS_PATH, PULL_PATH, SEND_PATH
from rpc_srv import handlers
from rpc_srv.middlewares import request_id_middleware
from rpc_srv.settings import Settings
from rpc_srv.store import MessageStore


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
        app[handlers.STORE] = store
        yield
        await store.close()

    return ctx


def create_app(settings: Settings | None = None) -> web.Application:
    """Build the RPC application; no I/O happens until it starts."""
    settings = settings or Settings.from_env()
    app = web.Application(
        middlewares=[request_id_middleware, handlers.errors_middleware],
        client_max_size=settings.request_max_bytes,
    )
    app[handlers.TEXT_MAX_BYTES] = settings.text_max_bytes
    app.cleanup_ctx.append(store_ctx(settings))
    app.router.add_post(SEND_PATH, handlers.send)
    app.router.add_post(PULL_PATH, handlers.pull)
    app.router.add_post(BATCH_PATH, handlers.batch)
    app.router.add_get(HEALTH_PATH, handlers.health)
    app.router.add_get(METRICS_PATH, handlers.metrics_text)
    return app
