"""The front end's Sanic application factory."""

from __future__ import annotations

from sanic import Sanic

from http_srv import routes
from http_srv.context import App, AppContext
from http_srv.deadline_protocol import LINE_MAX_CONFIG
from http_srv.errors import JsonErrorHandler
from http_srv.logs import log_config
from http_srv.request_id import IdRequest
from http_srv.rpc_client import RpcClient
from http_srv.settings import Settings
from http_srv.waits import Waits

APP_NAME = "pullchat"


def create_app(settings: Settings | None = None) -> App:
    """Build the front end; each worker calls this and opens its own RPC session."""
    settings = settings or Settings.from_env()
    app: App = Sanic(
        APP_NAME,
        ctx=AppContext(settings),
        error_handler=JsonErrorHandler(),
        request_class=IdRequest,
        log_config=log_config(settings.log_format),
    )
    app.config.update(
        REQUEST_MAX_SIZE=settings.request_max_bytes,
        REQUEST_MAX_HEADER_SIZE=settings.request_max_header_bytes,
        REQUEST_TIMEOUT=settings.request_timeout,
        # Counted from a request's first byte (see deadline_protocol.py): reading it,
        # then at most a pull's wait and one RPC call, then a little slack.
        RESPONSE_TIMEOUT=settings.request_timeout
        + settings.pull_wait_max
        + settings.rpc_timeout
        + 1,
        KEEP_ALIVE_TIMEOUT=settings.keepalive_timeout,
        GRACEFUL_SHUTDOWN_TIMEOUT=settings.graceful_timeout,
        ACCESS_LOG=settings.access_log,
        MOTD=False,
    )
    app.config[LINE_MAX_CONFIG] = settings.request_max_line_bytes
    routes.register(app)

    @app.before_server_start
    async def open_rpc(app: App) -> None:
        app.ctx.rpc = RpcClient(
            settings.rpc_url,
            settings.rpc_timeout,
            settings.rpc_pool_size,
            settings.rpc_keepalive,
            settings.rpc_batch,
            settings.rpc_batch_max,
            settings.rpc_resolve_interval,
            stream=settings.rpc_stream,
        )
        await app.ctx.rpc.start()
        app.ctx.waits = Waits(app.ctx.rpc)
        app.ctx.waits.start()

    @app.before_server_stop
    async def answer_waits(app: App) -> None:
        # Parked pulls answer their empty page now, not at the end of their wait.
        await app.ctx.waits.close()

    @app.after_server_stop
    async def close_rpc(app: App) -> None:
        await app.ctx.rpc.close()

    return app
