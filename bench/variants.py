"""Two or more stacks side by side: the code each runs, starting them, and their numbers.

What ``python -m bench.chats`` and ``python -m bench.ab`` share:

- a **variant** of the code is either this checkout as it is (the working
  tree, uncommitted changes included) or a git revision, checked out with
  ``git worktree add --detach`` into a temporary folder (removed at the end)
  and run from there: ``PYTHONPATH=<that folder>`` puts it before the
  editable install, ``PYTHONSAFEPATH=1`` keeps the current folder (this
  checkout) off ``sys.path``; which files the tiers import is checked before
  the stack starts (``import_check``);
- ``start_side``: a stack as bench/stack.py starts one (Redis with AOF, the
  RPC service, the front end, on free loopback ports), running that code,
  with settings on top;
- ``row_of``: one measured run (bench/measure.py) as a flat row: req/s,
  latency, CPU µs per request per tier (bench/procstat.py), other cores;
- medians and ratios of those rows, and Markdown table helpers.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import traceback
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from bench import stack
from bench.results import RunResult
from launcher.stack import Stack

REPO = stack.REPO
WORKING_TREE = "."  # the name of the working tree where a revision is expected
TIERS = ("http", "rpc", "redis")  # the roles of a stack's processes (launcher.stack.Stack.roles)


@dataclass
class Side:
    """One stack being compared: its label (A, B), what code it runs, and where it is."""

    label: str
    code: str  # what it runs, for the report
    target: stack.Target
    imports: dict[str, str] = field(default_factory=dict)  # package -> file, in its checkout

    @property
    def url(self) -> str:
        return self.target.url

    def redis(self) -> redis.Redis:
        return self.target.redis()


# -- which code -------------------------------------------------------------------


def measured(report: dict[str, Any], out: Path, run: Callable[[], None]) -> int:
    """Run a bench's measuring steps: the exit status (0; 130 interrupted; 2 a step broke).

    What broke is put in the report (the traceback in ``out/error.txt``), so
    that a report of what was measured is still written.
    """
    try:
        run()
    except KeyboardInterrupt:
        report["error"] = "interrupted"
        return 130
    except Exception as exc:
        report["error"] = f"{type(exc).__name__}: {exc}"
        (out / "error.txt").write_text(traceback.format_exc())
        traceback.print_exc()
        return 2
    return 0


def git(*args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=60, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"git {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout.strip()


def describe(rev: str, tree: Path | None = None) -> dict[str, Any]:
    """Commit and subject of the checkout of `rev` in `tree`; without `tree`, of this one
    (HEAD), and which files have uncommitted changes."""
    where = ("-C", str(tree)) if tree is not None else ()
    info: dict[str, Any] = {"rev": rev, "commit": git(*where, "rev-parse", "HEAD")}
    info["subject"] = git(*where, "log", "-1", "--format=%s", "HEAD")
    if tree is None:
        changed = git("diff", "--name-only", "HEAD").splitlines()  # staged or not
        info["dirty"] = bool(changed)
        info["changed_files"] = changed
        info["untracked_files"] = git("ls-files", "--others", "--exclude-standard").splitlines()
    return info


@contextlib.contextmanager
def checkout(rev: str) -> Iterator[tuple[Path, dict[str, Any]]]:
    """`rev` in a temporary worktree (detached; the checkout itself is left as it is)."""
    parent = Path(tempfile.mkdtemp(prefix="pullchat-rev-"))
    tree = parent / "tree"
    try:
        git("worktree", "add", "--detach", "--quiet", str(tree), rev)
        yield tree, describe(rev, tree)
    finally:
        with contextlib.suppress(RuntimeError, subprocess.SubprocessError):
            git("worktree", "remove", "--force", str(tree))
        shutil.rmtree(parent, ignore_errors=True)
        with contextlib.suppress(RuntimeError, subprocess.SubprocessError):
            git("worktree", "prune")


def code_environ(code: Path | None) -> dict[str, str]:
    """The environment the tiers of a stack running `code` (None: this checkout) start with."""
    if code is None:
        return dict(os.environ)
    # `python -m rpc_srv` (and http_srv) from that folder: PYTHONPATH puts it
    # before the editable install (a finder appended to sys.meta_path), and
    # PYTHONSAFEPATH keeps the current folder (this checkout) off sys.path.
    return {**os.environ, "PYTHONPATH": str(code), "PYTHONSAFEPATH": "1"}


def import_check(code: Path | None, environ: Mapping[str, str]) -> dict[str, str]:
    """Where the tiers' packages are imported from, with the interpreter, environment and
    folder they start with; RuntimeError unless they all come from `code` (or this checkout)."""
    packages = ("rpc_srv", "http_srv")
    probe = "; ".join(f"import {p}; print({p}.__file__)" for p in packages)
    done = subprocess.run(
        [sys.executable, "-c", probe],
        env=dict(environ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"the tiers of {code or REPO} do not import: {done.stderr.strip()}")
    found = dict(zip(packages, done.stdout.split(), strict=True))
    root = (code or REPO).resolve()
    wrong = {p: f for p, f in found.items() if not Path(f).resolve().is_relative_to(root)}
    if wrong:
        raise RuntimeError(f"meant to run {root}, would import {wrong}")
    return {p: str(Path(f).resolve().relative_to(root)) for p, f in found.items()}


# -- stacks -----------------------------------------------------------------------


def worker_settings(http_workers: int | None, rpc_workers: int | None) -> dict[str, str]:
    """HTTP_WORKERS and RPC_WORKERS, those that are given."""
    settings: dict[str, str] = {}
    if http_workers is not None:
        settings["HTTP_WORKERS"] = str(http_workers)
    if rpc_workers is not None:
        settings["RPC_WORKERS"] = str(rpc_workers)
    return settings


def start_side(
    label: str,
    code_name: str,
    logs: Path,
    name: str,
    code: Path | None,
    settings: Mapping[str, str] | None = None,
) -> Side:
    """A stack as bench/stack.py starts one; with `code`, its tiers run that checkout.

    `settings` go on top of the stack's own (HTTP_ACCESS_LOG=false and the
    addresses), into every tier's environment; the Target's ``env`` holds them.
    Where the tiers' packages come from is checked first (``Side.imports``).
    `name` tells this stack's logs and Redis data from another one's.
    """
    overrides = {"HTTP_ACCESS_LOG": "false", **(settings or {})}
    built = Stack.on_loopback(log_dir=logs, name=name, overrides=overrides)
    built.environ = code_environ(code)
    imports = import_check(code, built.env)
    built.start(timeout=60)
    target = stack.Target(
        built.base, built.redis_url, built.roles(), dict(built.settings), stack=built
    )
    return Side(label, code_name, target, imports)


def http(method: str, url: str, body: bytes | None = None) -> tuple[int, bytes]:
    headers = {"Content-Type": "application/json"} if body is not None else {}
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return int(resp.status), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def aof_rewrites(side: Side) -> int:
    client = side.redis()
    try:
        return int(client.info("persistence").get("aof_rewrites", 0))
    finally:
        client.close()


# -- numbers ----------------------------------------------------------------------


def row_of(result: RunResult) -> dict[str, Any]:
    """One measured run as a flat row (CPU in µs per request, by role and in total)."""
    cpu = {k: round(v, 1) for k, v in result.cpu_us_per_request.items()}
    client = result.client_cpu_us_per_request
    other = result.other_cpu_cores
    return {
        "rps": round(result.output.rps, 1),
        "requests": result.output.requests,
        "p50_ms": result.output.latency_ms.get("p50"),
        "p99_ms": result.output.latency_ms.get("p99"),
        "cpu_us_per_request": cpu,
        "client_cpu_us_per_request": round(client, 1) if client is not None else None,
        "other_cores": round(other, 2) if other is not None else None,
        "errors": result.output.errors,
        "ok": result.ok,
        "failure": result.failure,
        "argv": result.output.argv,
    }


Pick = Callable[[dict[str, Any]], float | None]


def median_of(rows: list[dict[str, Any]], pick: Pick) -> float | None:
    """The median of `pick` over the rows that are ok (and have a value), or None."""
    values = [v for v in (pick(r) for r in rows if r["ok"]) if v is not None]
    return statistics.median(values) if values else None


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a is not None and b else None


def cpu_of(role: str) -> Pick:
    def pick(row: dict[str, Any]) -> float | None:
        value: float | None = row["cpu_us_per_request"].get(role)
        return value

    return pick


def fmt(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, float) and digits:
        return f"{value:,.{digits}f}"
    if isinstance(value, (int, float)):
        return f"{value:,.0f}" if abs(value) >= 100 or not digits else f"{value:.{digits}f}"
    return str(value)


def cells(*values: Any) -> str:
    """One row of a Markdown table."""
    return "| " + " | ".join(str(v) for v in values) + " |\n"
