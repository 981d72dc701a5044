"""The throughput ceiling of the front end's framework: a bare Sanic app.

``GET /ping`` answers ``{"message":"pong"}`` with no parsing, no RPC and no
store, on as many workers as the machine has cores (``PONG_WORKERS``,
default ``os.cpu_count()``). Whatever the real front end does per request is
paid on top of this, so a workload's req/s divided by this one's, at the same
concurrency, says how much of the framework's speed the stack keeps.

It listens with the front end's default backlog (``HTTP_BACKLOG``), so a
thousand connections opened at once meet the same accept queue on both.

Run it as ``python -m bench.pong`` (port from ``PONG_PORT``, default 8090).
"""

from __future__ import annotations

import os
from types import SimpleNamespace

from sanic import HTTPResponse, Request, Sanic
from sanic.config import Config
from sanic.worker.loader import AppLoader

from http_srv.settings import Settings

_PONG = b'{"message":"pong"}'
Pong = Sanic[Config, SimpleNamespace]


async def ping(request: Request) -> HTTPResponse:
    return HTTPResponse(_PONG, content_type="application/json")


def create_app() -> Pong:
    app: Pong = Sanic("pong")
    app.config.update(ACCESS_LOG=False, MOTD=False)
    app.add_route(ping, "/ping", methods=["GET"])
    return app


def main() -> None:
    port = int(os.environ.get("PONG_PORT", "8090"))
    workers = int(os.environ.get("PONG_WORKERS", "0")) or os.cpu_count() or 1
    loader = AppLoader(factory=create_app)
    app = loader.load()
    backlog = Settings().backlog
    app.prepare(host="127.0.0.1", port=port, workers=workers, access_log=False, backlog=backlog)
    Sanic.serve(primary=app, app_loader=loader)


if __name__ == "__main__":
    main()
