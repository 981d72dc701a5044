"""Reading typed settings from environment variables, for both tiers."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import field, fields
from typing import Any, TypeVar

T = TypeVar("T")


class SettingError(ValueError):
    """An environment variable holds a value its setting cannot take."""


def env_str(name: str, default: str) -> str:
    value = os.environ.get(name, "").strip()
    return value or default


def env_int(name: str, default: int, minimum: int = 0) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise SettingError(f"{name} must be at least {minimum}, got {value}")
    return value


def env_float(name: str, default: float, minimum: float = 0.0) -> float:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingError(f"{name} must be a number, got {raw!r}") from None
    if not value >= minimum:
        raise SettingError(f"{name} must be at least {minimum}, got {raw}")
    return value


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise SettingError(f"{name} must be true or false, got {raw!r}")


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    """Refuse a value outside `choices`, naming them."""
    if value not in choices:
        allowed = ", ".join(choices[:-1]) + f" or {choices[-1]}" if len(choices) > 1 else choices[0]
        raise SettingError(f"{name} must be {allowed}, got {value!r}")


def setting(env: str, default: Any, minimum: float | None = None, doc: str = "") -> Any:
    """A dataclass field read from the environment variable `env` by `from_env`."""
    return field(default=default, metadata={"env": env, "minimum": minimum, "doc": doc})


def from_env(cls: type[T]) -> T:
    """An instance of the settings dataclass `cls`, each field from its variable."""
    values: dict[str, Any] = {}
    for f in fields(cls):  # type: ignore[arg-type]
        name, minimum = f.metadata["env"], f.metadata["minimum"]
        default = f.default
        if isinstance(default, bool):
            values[f.name] = env_bool(name, default)
        elif isinstance(default, int):
            values[f.name] = env_int(name, default, int(minimum or 0))
        elif isinstance(default, float):
            values[f.name] = env_float(name, default, float(minimum or 0.0))
        else:
            values[f.name] = env_str(name, str(default))
    return cls(**values)


def or_exit(load: Callable[[], T], program: str = "pullchat") -> T:
    """`load()`, or one line naming the bad setting on stderr and exit status 2.

    A bad setting is the operator's to fix, not a crash: no traceback.
    """
    try:
        return load()
    except SettingError as exc:
        print(f"{program}: bad setting: {exc}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
