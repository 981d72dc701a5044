"""Only the front end is public: loopback binds, Redis passwords, no leaked internals."""

from __future__ import annotations

import socket
import uuid
from pathlib import Path

import orjson

from launcher.procs import free_port, redis_child
from launcher.stack import Stack
from rpc_srv.settings import Settings as RpcSettings
from tests.client import http_call
from tests.netstat import listeners
from tests.stacks import StackFactory


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a TCP listener on `port`."""
    return set(listeners(port))


def test_rpc_service_binds_loopback_by_default() -> None:
    """RPC_HOST defaults to 127.0.0.1."""
    assert RpcSettings().host == "127.0.0.1"


def test_stack_rpc_listens_on_loopback_only(stack: Stack) -> None:
    """The running RPC service listens on 127.0.0.1 only (0100007F in /proc/net/tcp)."""
    port = int(stack.env["RPC_PORT"])
    assert listening_addresses(port) == {"0100007F"}


def test_redis_password_in_redis_url(tmp_path: Path, make_stack: StackFactory) -> None:
    """A Redis with requirepass works when REDIS_URL carries the password."""
    port = free_port()
    password = uuid.uuid4().hex
    redis = redis_child(
        port, tmp_path / "redis", log=tmp_path / "redis.log", appendonly=False, password=password
    ).start()
    try:
        stack = make_stack(redis.url)
        body = orjson.dumps({"chat": "pw:x", "sender": "pw", "text": "secret store"})
        status, reply, _ = http_call(stack.base, "POST", "/api/send", body)
        assert status == 200, reply
        # Without the password the store refuses, and the client sees a clean 503.
        bad = make_stack(f"redis://127.0.0.1:{port}/0")
        status, reply, _ = http_call(bad.base, "POST", "/api/send", body)
        assert status == 503, reply
        assert password not in str(reply)
    finally:
        make_stack.stop_all()  # before their Redis
        redis.stop()


def test_errors_leak_no_internals(make_stack: StackFactory) -> None:
    """5xx answers name no internal address, port, path or stack trace."""
    redis_port = free_port()
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        rpc_port = silent.getsockname()[1]
        answers = []
        for overrides in (
            {"RPC_URL": f"http://127.0.0.1:{free_port()}"},  # nobody there: 503
            {"RPC_URL": f"http://127.0.0.1:{rpc_port}", "RPC_TIMEOUT": "0.3"},  # silent: 504
            {},  # Redis down: 503 from the store
        ):
            with make_stack(f"redis://127.0.0.1:{redis_port}/0", **overrides) as s:
                status, reply, _ = http_call(
                    s.base, "POST", "/api/send", b'{"chat":"a:b","sender":"a","text":"x"}'
                )
                answers.append((status, reply))
    assert [status for status, _ in answers] == [503, 504, 503]
    for _, reply in answers:
        text = orjson.dumps(reply).decode()
        assert set(reply) == {"code", "msg"}
        for leak in ("127.0.0.1", str(redis_port), str(rpc_port), "Traceback", "/", "File "):
            assert leak not in text, (leak, text)
