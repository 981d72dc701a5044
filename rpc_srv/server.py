"""Run the RPC service: gunicorn's pre-fork master with aiohttp's uvloop workers.

gunicorn restarts a worker that dies, drains workers on SIGTERM (graceful
stop within ``RPC_GRACEFUL_TIMEOUT``) and shares one listening socket among
``RPC_WORKERS`` processes.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from gunicorn.app.base import BaseApplication

from rpc_srv.app import create_app
from rpc_srv.settings import Settings


class RpcServer(BaseApplication):  # type: ignore[misc]
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        super().__init__()

    def load_config(self) -> None:
        s = self.settings
        options: dict[str, Any] = {
            "bind": f"{s.host}:{s.port}",
            "workers": s.workers,
            "worker_class": "aiohttp.GunicornUVLoopWebWorker",
            "keepalive": s.keepalive,
            "graceful_timeout": s.graceful_timeout,
            "timeout": 30,
            "reuse_port": True,
            "accesslog": None,
            "proc_name": "pullchat-rpc",
            "control_socket_disable": True,
        }
        for key, value in options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        settings = self.settings

        async def factory() -> web.Application:
            # Called in each worker after the fork: every worker has its own pool.
            return create_app(settings)

        return factory


def main() -> None:
    RpcServer(Settings.from_env()).run()


if __name__ == "__main__":
    main()
