"""Run the RPC service (``pullchat-rpc``, ``python -m rpc_srv``); see gunicorn_app.py."""

from __future__ import annotations

from rpc_srv.envvars import or_exit
from rpc_srv.prom import prepare_multiprocess_dir


def main() -> None:
    from rpc_srv.settings import Settings  # imports no prometheus_client

    settings = or_exit(Settings.from_env, "pullchat-rpc")
    # Before anything imports prometheus_client: workers share one metrics directory.
    prepare_multiprocess_dir()
    from rpc_srv.gunicorn_app import RpcServer

    RpcServer(settings).run()


if __name__ == "__main__":
    main()
