"""Settings come from environment variables, with defaults, and refuse bad values."""

from __future__ import annotations

import pytest

from http_srv.settings import Settings as HttpSettings
from rpc_srv.envvars import SettingError
from rpc_srv.settings import Settings as RpcSettings


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    """With nothing set, the documented defaults apply."""
    for name in ("HTTP_PORT", "RPC_PORT", "RPC_URL", "RPC_TIMEOUT", "REDIS_URL", "HTTP_ACCESS_LOG"):
        monkeypatch.delenv(name, raising=False)
    http, rpc = HttpSettings.from_env(), RpcSettings.from_env()
    assert (http.port, http.rpc_url, http.rpc_timeout, http.access_log) == (
        8080,
        "http://127.0.0.1:8888",
        2.0,
        False,
    )
    assert (rpc.port, rpc.host, rpc.redis_url) == (8888, "127.0.0.1", "redis://127.0.0.1:6379/0")


def test_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each variable overrides its setting, typed."""
    monkeypatch.setenv("HTTP_PORT", "9000")
    monkeypatch.setenv("RPC_TIMEOUT", "0.5")
    monkeypatch.setenv("HTTP_ACCESS_LOG", "yes")
    monkeypatch.setenv("REDIS_URL", "redis://:secret@127.0.0.1:6390/2")
    http, rpc = HttpSettings.from_env(), RpcSettings.from_env()
    assert (http.port, http.rpc_timeout, http.access_log) == (9000, 0.5, True)
    assert rpc.redis_url == "redis://:secret@127.0.0.1:6390/2"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("HTTP_PORT", "eighty"),
        ("HTTP_WORKERS", "0"),
        ("RPC_TIMEOUT", "-1"),
        ("HTTP_ACCESS_LOG", "x"),
    ],
)
def test_bad_values_are_refused(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    """A value a setting cannot take stops start-up with the variable's name."""
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingError, match=name):
        HttpSettings.from_env()


def test_readme_documents_every_setting() -> None:
    """Each environment variable of both tiers has a row in the README's table."""
    from dataclasses import fields
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    for cls in (HttpSettings, RpcSettings):
        for f in fields(cls):
            assert f"| `{f.metadata['env']}` |" in readme, f.metadata["env"]
