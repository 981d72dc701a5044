"""The run command: Redis (unless ``REDIS_URL`` is given), the RPC service, the front end.

All three run in the foreground; Ctrl-C or SIGTERM stops them in order (front
end, RPC service, Redis), and if one of them dies the others are stopped too.
Its own lines follow ``LOG_FORMAT`` like the tiers' (text: ``pullchat: ...``).
"""

from __future__ import annotations

import logging
import logging.config
import os
import signal
import time
from pathlib import Path
from types import FrameType

from contract.envvars import env_int, or_exit
from contract.logconfig import base_config, formatter, handler
from http_srv.settings import Settings as HttpSettings
from launcher.procs import StartError
from launcher.stack import Stack
from rpc_srv.settings import Settings as RpcSettings

log = logging.getLogger("pullchat")


class BelowWarning(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno < logging.WARNING


def setup_logging(log_format: str) -> None:
    """Information to stdout, problems to stderr, as text or JSON."""
    text = {"format": "pullchat: %(message)s"}
    config = base_config(
        {"run": formatter(log_format, text)},
        {
            "out": handler("ext://sys.stdout", "run", level="INFO"),
            "err": handler("ext://sys.stderr", "run", level="WARNING"),
        },
    )
    config["filters"]["below_warning"] = {"()": BelowWarning}
    config["handlers"]["out"]["filters"].append("below_warning")
    config["loggers"] = {
        "pullchat": {"level": "INFO", "handlers": ["out", "err"], "propagate": False}
    }
    logging.config.dictConfig(config)


class Interrupted(Exception):
    """A stop signal arrived while the stack was still starting."""


def check_settings(env: dict[str, str]) -> None:
    """Every setting of the run command and both tiers, before anything starts.

    A bad one exits with status 2 and one line naming it (envvars.or_exit).
    """
    os.environ.update(env)  # the tiers read their settings from the environment
    or_exit(lambda: env_int("REDIS_PORT", 6379, minimum=1))
    or_exit(HttpSettings.from_env)
    or_exit(RpcSettings.from_env)


def main() -> None:
    env = dict(os.environ)
    env.setdefault("RPC_HOST", "127.0.0.1")
    env.setdefault("RPC_PORT", "8888")
    env.setdefault("HTTP_PORT", "8080")
    env.setdefault("RPC_URL", f"http://127.0.0.1:{env['RPC_PORT']}")
    check_settings(env)
    setup_logging(RpcSettings.from_env().log_format)
    own_redis = not env.get("REDIS_URL")
    stack = Stack(
        environ=env,
        redis_port=env_int("REDIS_PORT", 6379, minimum=1) if own_redis else None,
        data_dir=Path(env.get("PULLCHAT_DATA_DIR") or "data") / "redis",
    )

    stopping = False
    starting = True

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        if starting:
            raise Interrupted  # out of the start-up wait: what was started is stopped

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    status = 0
    try:
        if own_redis:
            stack.start_redis()
            log.info("Redis on 127.0.0.1:%s, AOF in %s", stack.redis_port, stack.data_dir)
        stack.add_rpc()
        stack.add_http()
        starting = False
        base = f"http://127.0.0.1:{env['HTTP_PORT']}"
        log.info(
            "up: API %s/api, docs %s/docs, metrics %s/metrics, RPC %s; Ctrl-C stops it",
            base,
            base,
            base,
            stack.rpc_url,
        )
        while not stopping:
            dead = [c for c in stack.children if not c.alive()]
            if dead:
                log.error("%s exited; stopping the rest", dead[0].name)
                status = 1
                break
            time.sleep(0.2)
    except StartError as exc:
        log.error("%s", exc)
        status = 1
    except Interrupted:
        pass
    finally:
        starting = False  # a second signal must not cut the stopping short
        if stopping:
            log.info("stopping")
        stack.stop()  # front end, RPC service, Redis: each by its PID
        if stopping:
            log.info("stopped")
    raise SystemExit(status)


if __name__ == "__main__":
    main()
