"""The RPC service under gunicorn: a pre-fork master with aiohttp's uvloop workers.

gunicorn restarts a worker that dies, stops workers gracefully on SIGTERM
(within ``RPC_GRACEFUL_TIMEOUT``) and shares one listening socket among
``RPC_WORKERS`` processes. Before a worker stops it drains: for
``RPC_DRAIN_SECONDS`` it keeps answering, but marks every reply so that
clients move to another replica and closes each connection after its reply;
only then does it stop accepting and finish what is in flight. A worker with
no connection open has nobody to tell, so it skips the drain and stops at once.

Log lines go through ``logconfig_dict`` (see log_config): gunicorn's, aiohttp's
and the service's own, as text or JSON (``LOG_FORMAT``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from types import FrameType
from typing import Any, cast

from aiohttp import web
from aiohttp.worker import GunicornUVLoopWebWorker
from gunicorn.app.base import BaseApplication

from contract import prom
from contract.logconfig import TextFormatter, base_config, formatter, handler
from rpc_srv.app import create_app
from rpc_srv.settings import Settings
from rpc_srv.state import LIFECYCLE


class DrainingWorker(GunicornUVLoopWebWorker):
    """aiohttp's uvloop worker that drains before it stops (see the module doc)."""

    runner: web.AppRunner | None = None  # made by RpcServer.load's factory, kept here

    def load_wsgi(self) -> None:
        super().load_wsgi()
        worker = cast(Any, self)  # gunicorn's attributes are untyped
        make_runner: Callable[[], Awaitable[web.AppRunner]] = worker.wsgi

        async def keep_runner() -> web.AppRunner:
            self.runner = await make_runner()
            return self.runner

        worker.wsgi = keep_runner

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self.runner is None:
            self.stop_now(sig, frame)  # not serving yet: nothing to drain
            return
        lifecycle = self.runner.app[LIFECYCLE]
        if lifecycle.draining:
            return
        lifecycle.drain()
        server = self.runner.server
        if server is not None and not server.connections:
            self.stop_now(sig, frame)  # no client to tell
            return
        settings: Settings = cast(Any, self).app.settings
        self.loop.call_later(settings.drain_seconds, self.stop_now, sig, frame)

    def stop_now(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        # Wake the serving loop now rather than at its next one-second check.
        self._notify_waiter_done()


def bare_sockets(_arbiter: Any, worker: Any) -> None:
    """Give the worker the sockets themselves rather than gunicorn's wrappers.

    With reuse_port each worker binds its own; the event loop closes a plain
    socket once, where gunicorn's wrapper would be closed a second time
    (``Error while closing socket [Errno 9] Bad file descriptor``).
    """
    worker.sockets = [getattr(s, "sock", s) for s in worker.sockets]


class NoEmptyListening(logging.Filter):
    """Drops gunicorn's ``Listening at:  (pid)``: with reuse_port it has no address.

    The address is logged by ``when_ready`` instead.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        empty = isinstance(args, tuple) and bool(args) and not args[0]
        return not (record.msg == "Listening at: %s (%s)" and empty)


def log_config(log_format: str) -> dict[str, Any]:
    """gunicorn's ``logconfig_dict``: every line to stderr, as text or JSON."""
    text = {
        "()": TextFormatter,
        "format": "[%(asctime)s] [%(process)d] [%(levelname)s] %(message)s",
        "datefmt": "%Y-%m-%d %H:%M:%S %z",
    }
    config = base_config(
        {"generic": formatter(log_format, text)},
        {"console": handler("ext://sys.stderr", "generic")},
    )
    config["filters"]["no_empty_listening"] = {"()": NoEmptyListening}
    config["root"] = {"level": "INFO", "handlers": ["console"]}
    config["loggers"] = {
        "gunicorn.error": {
            "level": "INFO",
            "handlers": ["console"],
            "filters": ["no_empty_listening"],
            "propagate": False,
        },
        "gunicorn.access": {"level": "INFO", "handlers": ["console"], "propagate": False},
    }
    return config


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
            "logconfig_dict": log_config(s.log_format),
            "post_fork": bare_sockets,
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

    def load(self) -> Any:
        settings = self.settings

        async def factory() -> web.AppRunner:
            # Called in each worker after the fork: every worker has its own pool.
            # The worker keeps the runner to see whether any connection is open;
            # these are the options aiohttp's worker gives its own runner.
            return web.AppRunner(
                create_app(settings),
                keepalive_timeout=settings.keepalive,
                access_log=None,
                shutdown_timeout=settings.graceful_timeout / 100 * 95,
            )

        return factory
