"""The RPC service under gunicorn: a pre-fork master with aiohttp's uvloop workers.

gunicorn restarts a worker that dies, stops workers gracefully on SIGTERM
(within ``RPC_GRACEFUL_TIMEOUT``) and shares one listening socket among
``RPC_WORKERS`` processes. Before a worker stops it drains: for
``RPC_DRAIN_SECONDS`` it keeps answering, but marks every reply so that
clients move to another replica and closes each connection after its reply;
only then does it stop accepting and finish what is in flight.
"""

from __future__ import annotations

from types import FrameType
from typing import Any

from aiohttp import web
from aiohttp.worker import GunicornUVLoopWebWorker
from gunicorn.app.base import BaseApplication

from rpc_srv import handlers, prom
from rpc_srv.app import create_app
from rpc_srv.settings import Settings


class DrainingWorker(GunicornUVLoopWebWorker):
    drain_seconds = 1.0

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if handlers.DRAIN.draining:
            return
        handlers.DRAIN.draining = True
        self.loop.call_later(self.drain_seconds, super().handle_exit, sig, frame)


class RpcServer(BaseApplication):  # type: ignore[misc]
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        super().__init__()

    def load_config(self) -> None:
        s = self.settings
        options: dict[str, Any] = {
            "bind": f"{s.host}:{s.port}",
            "workers": s.workers,
            "worker_class": DrainingWorker,
            "keepalive": s.keepalive,
            "graceful_timeout": s.graceful_timeout,
            "timeout": 30,
            "reuse_port": True,
            "accesslog": None,
            "proc_name": "pullchat-rpc",
            "control_socket_disable": True,
            "child_exit": lambda _arbiter, worker: prom.mark_process_dead(worker.pid),
            # With reuse_port each worker binds its own socket, so gunicorn's own
            # "Listening at" line has no address to show: say it here.
            "when_ready": lambda arbiter: arbiter.log.info(
                "pullchat-rpc listening at http://%s:%s with %s worker(s)",
                s.host,
                s.port,
                s.workers,
            ),
        }
        for key, value in options.items():
            self.cfg.set(key, value)
        DrainingWorker.drain_seconds = s.drain_seconds

    def load(self) -> Any:
        settings = self.settings

        async def factory() -> web.Application:
            # Called in each worker after the fork: every worker has its own pool.
            return create_app(settings)

        return factory
