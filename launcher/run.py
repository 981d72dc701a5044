"""The run command: Redis (unless ``REDIS_URL`` is given), the RPC service, the front end.

All three run in the foreground; Ctrl-C or SIGTERM stops them in order (front
end, RPC service, Redis), and if one of them dies the others are stopped too.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from http_srv.settings import Settings as HttpSettings
from launcher.procs import Child, StartError, http_child, redis_child, rpc_child
from rpc_srv.envvars import env_int, or_exit
from rpc_srv.settings import Settings as RpcSettings


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
    children: list[Child] = []

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
        if not env.get("REDIS_URL"):
            port = env_int("REDIS_PORT", 6379, minimum=1)
            data_dir = Path(env.get("PULLCHAT_DATA_DIR") or "data") / "redis"
            children.append(redis_child(port, data_dir).start())
            env["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
            print(f"pullchat: Redis on 127.0.0.1:{port}, AOF in {data_dir}", flush=True)
        children.append(rpc_child(env).start())
        children.append(http_child(env).start())
        starting = False
        base = f"http://127.0.0.1:{env['HTTP_PORT']}"
        print(
            f"pullchat: up: API {base}/api, docs {base}/docs, metrics {base}/metrics, "
            f"RPC {env['RPC_URL']}; Ctrl-C stops it",
            flush=True,
        )
        while not stopping:
            dead = [c for c in children if not c.alive()]
            if dead:
                print(f"pullchat: {dead[0].name} exited; stopping the rest", file=sys.stderr)
                status = 1
                break
            time.sleep(0.2)
    except StartError as exc:
        print(f"pullchat: {exc}", file=sys.stderr)
        status = 1
    except Interrupted:
        pass
    finally:
        starting = False  # a second signal must not cut the stopping short
        for child in reversed(children):
            child.stop()
    sys.exit(status)


if __name__ == "__main__":
    main()
