"""Typed per-worker state of the front end, kept on ``app.ctx``."""

from __future__ import annotations

from typing import Any, cast

from sanic import Request, Sanic
from sanic.config import Config

from http_srv.rpc_client import RpcClient
from http_srv.settings import Settings
from http_srv.waits import Waits


class AppContext:
    settings: Settings
    rpc: RpcClient  # opened when the worker starts
    waits: Waits  # pulls waiting for a message, and the stream that wakes them

    def __init__(self, settings: Settings) -> None:
        self.settings = settings


App = Sanic[Config, AppContext]


def ctx(request: Request) -> AppContext:
    return cast(AppContext, cast(Any, request.app).ctx)
