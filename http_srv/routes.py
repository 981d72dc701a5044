"""The front end's route table: each public path and its handler."""

from __future__ import annotations

from swagger_ui_bundle import swagger_ui_path  # type: ignore[import-untyped]

from http_srv import docs, handlers, metrics, web_client
from http_srv.context import App
from http_srv.metrics import Handler

DOCS_ASSETS_ROUTE = "swagger_ui_assets"


def register(app: App) -> None:
    measured = app.ctx.settings.metrics

    def add(handler: Handler, path: str, method: str, name: str) -> None:
        app.add_route(
            metrics.timed(name, handler) if measured else handler,
            path,
            methods=[method],
            name=name,
            stream=True,  # every route reads its body under the deadline: read_body
        )

    add(docs.openapi, "/docs/openapi.json", "GET", "openapi")
    add(docs.page, "/docs", "GET", "docs")
    app.add_route(
        docs.init_script, "/docs/init.js", methods=["GET"], name=f"init_{DOCS_ASSETS_ROUTE}"
    )
    app.static("/docs/ui", swagger_ui_path, name=DOCS_ASSETS_ROUTE)
    app.blueprint(web_client.web)  # the chat page at / and its files under /web/
    add(handlers.ping, "/ping", "GET", "ping")
    add(handlers.send, "/api/send", "POST", "send")
    add(handlers.pull, "/api/pull", "GET", "pull")
    add(handlers.chats, "/api/chats", "GET", "chats")
    add(handlers.read, "/api/read", "POST", "read")
    if measured:
        add(handlers.metrics_text, "/metrics", "GET", "metrics")
