"""Settings come from environment variables, with defaults, and refuse bad values."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from contract.envvars import SettingError
from http_srv.settings import Settings as HttpSettings
from launcher.procs import free_port
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


# Settings that take any string: nothing to refuse before they are used.
FREE_FORM = {"HTTP_HOST", "RPC_HOST", "RPC_URL", "REDIS_URL", "PULLCHAT_DATA_DIR"}
README_ROW = re.compile(r"^\| `([A-Z_]+)` \| [^|]+ \| `([^`]*)` \|", re.MULTILINE)


def readme_settings() -> list[tuple[str, str]]:
    """(variable, default) of every row of the README's configuration table."""
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    return README_ROW.findall(section)


def bad_value(default: str) -> str:
    """A value the setting with this default cannot take."""
    if default in ("True", "False"):
        return "maybe"
    if default == "auto":
        return "sometimes"
    return "abc"


CHECKED = [(name, bad_value(d)) for name, d in readme_settings() if name not in FREE_FORM]


def test_every_readme_setting_is_checked_or_free_form() -> None:
    """The bad-value test below covers every row of the table but the free-form strings."""
    names = {name for name, _ in readme_settings()}
    assert len(names) >= 30 and names >= FREE_FORM
    assert len(CHECKED) == len(names) - len(FREE_FORM)


@pytest.mark.parametrize(("name", "value"), CHECKED, ids=[n for n, _ in CHECKED])
def test_run_command_refuses_a_bad_setting_before_starting(
    tmp_path: Path, name: str, value: str
) -> None:
    """`make run` with a bad value: one line naming it, exit status 2, nothing started."""
    redis_port = free_port()
    env = {
        **os.environ,
        "REDIS_PORT": str(redis_port),
        "PULLCHAT_DATA_DIR": str(tmp_path),
        "HTTP_PORT": str(free_port()),
        "RPC_PORT": str(free_port()),
        name: value,
    }
    env.pop("REDIS_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "launcher"], env=env, capture_output=True, timeout=60, text=True
    )
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert name in lines[0] and repr(value) in lines[0], lines[0]
    assert done.stdout == ""  # nothing was started, not even Redis
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("module", ["http_srv", "rpc_srv"])
def test_each_server_refuses_a_bad_setting_in_one_line(module: str) -> None:
    """Started on its own, each tier also says what is wrong in one line and exits 2."""
    env = {**os.environ, "HTTP_PORT": "abc", "RPC_PORT": "abc"}
    done = subprocess.run(
        [sys.executable, "-m", module], env=env, capture_output=True, timeout=60, text=True
    )
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and "_PORT must be an integer, got 'abc'" in lines[0], done.stderr
