"""Logs of a normal start and stop: no error line, the addresses, text or JSON lines."""

from __future__ import annotations

import logging
import re
import signal
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from contract.logconfig import JsonFormatter, TextFormatter
from contract.request_ids import HEADER, RequestIdFilter, using
from tests.client import http_call
from tests.test_stop import ERROR_LINE, run_env, start_run

# Redis's own lines ("pid:role date # ..."): it is neither tier and keeps its format.
REDIS_LINE = re.compile(r"^\d+:(?:[CMSX] |signal-handler )")


def run_and_stop(tmp_path: Path, **extra: str) -> str:
    """Start the run command, make a few requests, stop it; its whole output."""
    env = run_env(tmp_path, HTTP_ACCESS_LOG="true", **extra)
    base = f"http://127.0.0.1:{env['HTTP_PORT']}"
    log = tmp_path / "run.log"
    proc = start_run(env, log)
    try:
        body = orjson.dumps({"chat": "ann:bob", "sender": "ann", "text": "hi"})
        headers = {"Content-Type": "application/json", HEADER: "log-send-1"}
        assert http_call(base, "POST", "/api/send", body, headers)[0] == 200
        assert http_call(base, "GET", "/nowhere", headers={HEADER: "log-404"})[0] == 404
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    return log.read_text()


def test_text_logs_are_clean_and_name_the_addresses(tmp_path: Path) -> None:
    """No error line on start and stop; the RPC address and the URLs; ids on access lines."""
    output = run_and_stop(tmp_path)
    lines = output.splitlines()
    assert [line for line in lines if ERROR_LINE.search(line)] == [], output
    assert "Listening at:  (" not in output and "Bad file descriptor" not in output
    assert re.search(r"pullchat-rpc listening at http://127\.0\.0\.1:\d+ with 1 worker", output)
    up = [line for line in lines if line.startswith("pullchat: up: API http://")]
    assert len(up) == 1 and "/docs" in up[0] and "/metrics" in up[0], output
    access = [line for line in lines if "/api/send" in line]
    assert len(access) == 1 and access[0].endswith("[request_id=log-send-1]"), access
    assert any("/nowhere" in line and "[request_id=log-404]" in line for line in lines)
    assert lines[-1] == "pullchat: stopped", output


def test_json_logs_are_one_object_a_line(tmp_path: Path) -> None:
    """LOG_FORMAT=json: every line of both tiers and the run command is a JSON object."""
    output = run_and_stop(tmp_path, LOG_FORMAT="json")
    records = [orjson.loads(line) for line in output.splitlines() if not REDIS_LINE.match(line)]
    assert all({"time", "level", "logger", "pid", "message"} <= r.keys() for r in records)
    assert all(r["level"] in ("INFO", "WARNING") for r in records), records
    loggers = {r["logger"] for r in records}
    assert {"pullchat", "gunicorn.error", "sanic.root", "sanic.server", "sanic.access"} <= loggers
    sends = [r for r in records if r.get("request", "").startswith("POST ")]
    assert len(sends) == 1 and sends[0]["request_id"] == "log-send-1", sends
    assert sends[0]["status"] == 200
    assert any(r.get("request_id") == "log-404" and r["status"] == 404 for r in records)
    assert records[-1]["message"] == "stopped"


def test_a_bad_log_format_is_refused(tmp_path: Path) -> None:
    """LOG_FORMAT must be text or json: one line, exit status 2, nothing started."""
    done = subprocess.run(
        [sys.executable, "-m", "launcher"],
        env=run_env(tmp_path, LOG_FORMAT="xml"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and done.stdout == ""
    refused = "pullchat: bad setting: LOG_FORMAT must be text or json, got 'xml'"
    assert done.stderr.strip() == refused


@pytest.fixture
def record() -> logging.LogRecord:
    try:
        raise ValueError("broken\nacross lines")
    except ValueError:
        made = logging.LogRecord("x", logging.ERROR, __file__, 1, "failed %s", ("now",), None)
        made.exc_info = sys.exc_info()
    with using("req-9"):
        RequestIdFilter().filter(made)
    return made


def test_json_formatter_keeps_a_traceback_on_one_line(record: logging.LogRecord) -> None:
    line = JsonFormatter().format(record)
    assert "\n" not in line
    parsed = orjson.loads(line)
    assert parsed["message"] == "failed now" and parsed["request_id"] == "req-9"
    assert parsed["exc"].startswith("Traceback") and "broken\nacross lines" in parsed["exc"]


def test_text_formatter_names_the_request_before_the_traceback(
    record: logging.LogRecord,
) -> None:
    text = TextFormatter("%(levelname)s %(message)s").format(record)
    assert text.splitlines()[0] == "ERROR failed now [request_id=req-9]"
    assert "Traceback" in text
