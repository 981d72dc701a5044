"""The run command stops promptly whenever it is signalled, and lets in-flight requests finish."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from launcher.procs import free_port
from tests.client import http_call
from tests.proxy import DelayProxy

STOP_BOUND_SECONDS = 3.0
# A line that tells an operator something went wrong (Redis's own "#" lines
# are its warnings about the host, e.g. memory overcommit, and are not ours).
ERROR_LINE = re.compile(r"Traceback|\bERROR\b|CRITICAL|Errno|Exception|Killing|timed out")


def run_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """Default settings, but on free ports and with data under `tmp_path`."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("HTTP_", "RPC_", "REDIS_", "LOG_"))
    }
    env.update(
        REDIS_PORT=str(free_port()),
        HTTP_PORT=str(free_port()),
        RPC_PORT=str(free_port()),
        PULLCHAT_DATA_DIR=str(tmp_path / "data"),
        **extra,
    )
    return env


def start_run(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """The run command with its output in `log`, once it says it is up."""
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "launcher"], env=env, stdout=out, stderr=subprocess.STDOUT
        )
    deadline = time.monotonic() + 60
    while "up: API" not in log.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(log.read_text())
        time.sleep(0.1)
    return proc


def timed_stop(
    tmp_path: Path, delay: float, sig: str = "SIGTERM", **extra: str
) -> tuple[dict[str, Any], str]:
    """Signal the run command `delay` s after starting it: (stopwatch result, its output)."""
    log = tmp_path / "run.log"
    done = subprocess.run(
        [sys.executable, "-m", "tests.stopwatch", str(delay), str(log), "--signal", sig],
        env=run_env(tmp_path, **extra),
        capture_output=True,
        text=True,
        timeout=delay + 60,
        check=True,
    )
    return orjson.loads(done.stdout), log.read_text(errors="replace")


def check_stop(result: dict[str, Any], output: str, record: Any) -> None:
    record("stop_seconds", round(result["seconds"], 3))
    assert result["gone"] and result["leftover"] == [], (result, output)
    assert result["seconds"] <= STOP_BOUND_SECONDS, (result, output)
    errors = [line for line in output.splitlines() if ERROR_LINE.search(line)]
    assert errors == [], output


@pytest.mark.parametrize("delay", [0, 0.5, 1, 1.5, 2, 3, 10])
def test_stop_at_any_moment(tmp_path: Path, delay: float, record_property: Any) -> None:
    """SIGTERM 0 to 10 s after start: all processes gone within 3 s, no error line."""
    result, output = timed_stop(tmp_path, delay)
    check_stop(result, output, record_property)
    if delay >= 10:
        assert result["processes"] >= 6  # Redis, gunicorn and its worker, Sanic's
        assert result["status"] == 0


def test_ctrl_c_while_starting(tmp_path: Path, record_property: Any) -> None:
    """SIGINT (Ctrl-C) as the front end starts behaves the same."""
    result, output = timed_stop(tmp_path, 1.5, sig="SIGINT")
    check_stop(result, output, record_property)


@pytest.mark.parametrize("delay", [1, 4])
def test_stop_with_a_cluster(
    tmp_path: Path, cluster_url: str, delay: float, record_property: Any
) -> None:
    """With REDIS_URL at a Redis Cluster node: the same bound."""
    result, output = timed_stop(tmp_path, delay, REDIS_URL=cluster_url)
    check_stop(result, output, record_property)
    assert "Redis on" not in output  # the cluster is used, none started


def test_in_flight_request_finishes(tmp_path: Path, redis_url: str, record_property: Any) -> None:
    """A request in flight when SIGTERM arrives gets its answer; then everything stops."""
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    proxy = DelayProxy(port, low=0.4, high=0.4).start()  # a Redis round trip takes 0.8 s
    env = run_env(
        tmp_path,
        REDIS_URL=f"redis://127.0.0.1:{proxy.port}/0",
        REDIS_CLUSTER="no",
        REDIS_TIMEOUT="5",
        RPC_TIMEOUT="5",
    )
    base = f"http://127.0.0.1:{env['HTTP_PORT']}"
    log = tmp_path / "run.log"
    proc = start_run(env, log)
    try:
        answer: list[Any] = []
        body = orjson.dumps({"chat": "ann:bob", "sender": "ann", "text": "in flight"})
        sender = threading.Thread(
            target=lambda: answer.append(
                http_call(base, "POST", "/api/send", body, {"Content-Type": "application/json"})
            )
        )
        sender.start()
        time.sleep(0.3)  # the send now waits on Redis, behind the proxy
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        sender.join(10)
        assert proc.wait(20) == 0
        took = time.monotonic() - signalled
    finally:
        if proc.poll() is None:
            proc.kill()
        proxy.stop()
    record_property("stop_seconds_with_one_in_flight", round(took, 3))
    status, reply, _ = answer[0]
    assert status == 200 and reply["code"] == 0, reply
    assert took <= STOP_BOUND_SECONDS + 2.0, log.read_text()
