"""Run the RPC service (``pullchat-rpc``, ``python -m rpc_srv``); see gunicorn_app.py."""

from __future__ import annotations

from rpc_srv.prom import prepare_multiprocess_dir


def main() -> None:
    # Before anything imports prometheus_client: workers share one metrics directory.
    prepare_multiprocess_dir()
    from rpc_srv.gunicorn_app import RpcServer
    from rpc_srv.settings import Settings

    RpcServer(Settings.from_env()).run()


if __name__ == "__main__":
    main()
