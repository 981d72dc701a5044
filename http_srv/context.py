"""Typed per-worker state of the front end, kept on ``app.ctx``."""

from __future__ import annotations

from typing import Any, cast

from sanic import Request, Sanic
from sanic.config import Config

from http_srv.rpc_client import RpcClient
from http_srv.settings import Settings


class AppContext:
    settings: Settings
    rpc: RpcClient  # opened when the worker starts

    def __init__(self, settings: Settings) -> None:
        self.settings = settings


App = Sanic[Config, AppContext]


def ctx(request: Request) -> AppContext:
    return cast(AppContext, cast(Any, request.app).ctx)
