"""The RPC service's route table: each path of contract.wire and its handler."""

from __future__ import annotations

from aiohttp import web

from contract.wire import (
    BATCH_PATH,
    CHATS_PATH,
    HEALTH_PATH,
    MARK_READ_PATH,
    METRICS_PATH,
    PULL_PATH,
    SEND_PATH,
    STREAM_PATH,
    WATCH_PATH,
)
from rpc_srv import handlers, stream, watch


def register(app: web.Application) -> None:
    app.router.add_post(SEND_PATH, handlers.send)
    app.router.add_post(PULL_PATH, handlers.pull)
    app.router.add_post(CHATS_PATH, handlers.chats)
    app.router.add_post(MARK_READ_PATH, handlers.mark_read)
    app.router.add_post(BATCH_PATH, handlers.batch)
    app.router.add_get(STREAM_PATH, stream.stream)
    app.router.add_get(WATCH_PATH, watch.watch)
    app.router.add_get(HEALTH_PATH, handlers.health)
    app.router.add_get(METRICS_PATH, handlers.metrics_text)
