"""Run the front end: one process, or Sanic's worker manager for ``HTTP_WORKERS`` > 1.

Sanic stops gracefully on SIGTERM or SIGINT: it stops accepting, lets
in-flight requests finish within ``HTTP_GRACEFUL_TIMEOUT``, then closes each
worker's RPC session. With a worker manager, a stop signal that arrives while
its workers start is held until they serve (stopping.py).
"""

from __future__ import annotations

from functools import partial

from sanic import Sanic
from sanic.worker.loader import AppLoader

from contract.envvars import or_exit
from contract.prom import prepare_multiprocess_dir
from http_srv.settings import Settings
from http_srv.stopping import catch_early_stop, hold_stop_during_startup


def main() -> None:
    settings = or_exit(Settings.from_env, "pullchat-http")
    if settings.workers > 1:
        catch_early_stop()
        # Before prometheus_client is imported: workers share one metrics directory.
        prepare_multiprocess_dir()
    from http_srv.app import create_app
    from http_srv.deadline_protocol import DeadlineProtocol

    loader = AppLoader(factory=partial(create_app, settings))
    app = loader.load()
    single = settings.workers == 1
    app.prepare(
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        backlog=settings.backlog,
        access_log=settings.access_log,
        single_process=single,
        protocol=DeadlineProtocol,
    )
    if single:
        # No manager process: less to start, and SIGTERM right after start-up
        # is not held up by the manager waiting for its workers' start-up acks.
        Sanic.serve_single(primary=app)
    else:
        app.main_process_ready(hold_stop_during_startup)
        Sanic.serve(primary=app, app_loader=loader)


if __name__ == "__main__":
    main()
