"""``python -m bench.ab``: two variants of the stack measured side by side, in one run.

A **variant** is a git revision (``--a HEAD~3``), run from a ``git worktree``
of it (bench/variants.py), or the working tree (``.``, uncommitted changes
included), each with settings of its own on top (``--a-env``, ``--b-env``:
``NAME=value``, into every tier's environment). Both stacks are started as
``python -m bench`` starts one (Redis with AOF, the RPC service, the front
end, on free loopback ports) and get the same preload (the 1000 workload
chats, ``--messages`` each); then, for ``--rounds`` rounds:

- at each of ``--connections``: the bare Sanic pong ceiling once
  (bench/pong.py, one for both variants), then each workload of
  ``--workloads`` (``send``, ``pull``, ``mixed``: bench/wrk/*.lua) on A and
  on B, in the order A B, B A, A B, ... (the order flips from one workload
  to the next and from one round to the next), so both see the machine in
  the same state;
- every run: req/s, p50, p99, errors, CPU µs per request of each tier (front
  end, RPC, Redis: bench/procstat.py) and in total, the load generator's, and
  the busy cores that were neither (``other cores``).

The summary gives medians per variant, workload and concurrency, B/A of the
medians and the median (and range) of the rounds' own B/A, and each
variant's req/s and CPU per request over the pong of the same round.
``--profile`` adds one run per variant and workload with py-spy recording
the front end and the RPC service (not counted in the medians).

Results: ``<out>/<UTC time>-ab/summary.md`` and ``results.json``, logs in
``logs/``. Exit status 0, 1 (``--smoke`` saw a request fail), 2 (a step
broke: a report of what was measured is written anyway), 130 (interrupted).
Every process started is stopped by its PID, every worktree removed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import orjson

from bench import dataset, stack, wrk_runner
from bench.cli import positive_ints
from bench.measure import measure
from bench.results import machine_info, write_json
from bench.variants import (
    REPO,
    TIERS,
    WORKING_TREE,
    Pick,
    Side,
    aof_rewrites,
    cells,
    checkout,
    cpu_of,
    describe,
    fmt,
    git,
    http,
    measured,
    median_of,
    ratio,
    row_of,
    start_side,
)
from launcher.procs import Child

RESULTS = REPO / "bench" / "results"
LABELS = ("A", "B")
PONG = "pong"
WORKLOADS = ("send", "pull", "mixed")  # the wrk scripts of bench/wrk
ALL = (*WORKLOADS, PONG)
WARM_UP_S = 2
WARM_UP_CONNECTIONS = 20
PAUSE_S = 0.5  # before each run: the previous run's connections drain
SMOKE = {"duration": 2, "rounds": 1, "connections": (1, 20), "messages": 20}
PROFILE_RATE = 100  # py-spy samples per second
PROFILE_TOP = 25
PROFILE_TIERS = ("http", "rpc")  # Python processes; Redis is C, py-spy cannot read it
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
TIER_NAMES = {"http": "front end", "rpc": "RPC", "redis": "Redis"}


@dataclass
class Variant:
    """What one side runs: a revision (or the working tree) and settings on top."""

    label: str
    rev: str
    env: dict[str, str]
    code: Path | None = None  # the worktree it runs from; None: this checkout
    info: dict[str, Any] = field(default_factory=dict)  # commit, subject, ...

    @property
    def working_tree(self) -> bool:
        return self.rev == WORKING_TREE

    def description(self) -> str:
        commit = str(self.info.get("commit", "?"))[:10]
        subject = self.info.get("subject", "?")
        if self.working_tree:
            changed = self.info.get("changed_files", [])
            dirty = f"uncommitted changes in {', '.join(changed)}" if changed else "no changes"
            untracked = len(self.info.get("untracked_files", []))
            dirty += f", {untracked} untracked files" if untracked else ""
            what = f"the working tree (HEAD `{commit}` {subject}; {dirty})"
        else:
            what = f"`{commit}` {subject} (`{self.rev}`, run from a git worktree)"
        env = " ".join(f"{k}={v}" for k, v in self.env.items())
        return f"{what}; env: {f'`{env}`' if env else 'none'}"


# -- options ----------------------------------------------------------------------


def _env_pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not ENV_NAME.fullmatch(name):
        raise argparse.ArgumentTypeError(f"not NAME=value: {text!r}")
    return name, value


def _names(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(v.strip() for v in text.split(",") if v.strip()))
    unknown = [n for n in names if n not in ALL]
    if unknown or not any(n in WORKLOADS for n in names):
        raise argparse.ArgumentTypeError(
            f"workloads: some of {','.join(ALL)}, at least one of {','.join(WORKLOADS)}"
            + (f" (unknown: {','.join(unknown)})" if unknown else "")
        )
    return names


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.ab",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--a", default="HEAD", help="revision of A, or . (HEAD)")
    parser.add_argument("--b", default=WORKING_TREE, help="revision of B, or . (.)")
    for side in ("a", "b"):
        parser.add_argument(
            f"--{side}-env",
            type=_env_pair,
            action="append",
            default=[],
            metavar="NAME=VALUE",
            help=f"a setting of {side.upper()}'s tiers (repeat it for more)",
        )
    parser.add_argument(
        "--env", type=_env_pair, action="append", default=[], metavar="NAME=VALUE",
        help="a setting of both (under --a-env and --b-env)",
    )  # fmt: skip
    parser.add_argument(
        "--workloads", type=_names, default=ALL, help=f"comma-separated ({','.join(ALL)})"
    )
    parser.add_argument(
        "--connections",
        type=positive_ints,
        default=(50,),
        help="concurrency levels, comma-separated (50)",
    )
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds (4)")
    parser.add_argument("--duration", type=int, default=10, help="seconds per run (10)")
    parser.add_argument(
        "--messages", type=int, default=100, help="preloaded messages per workload chat (100)"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--profile",
        action="store_true",
        help="then one run per variant and workload under py-spy (front end, RPC)",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="1 round of 2 s runs at c=1,20, 20 messages per chat; exit 1 on any request error",
    )
    opts = parser.parse_args(argv)
    if opts.smoke:
        opts.duration = SMOKE["duration"]
        opts.rounds = SMOKE["rounds"]
        opts.connections = SMOKE["connections"]
        opts.messages = SMOKE["messages"]
    if min(opts.duration, opts.rounds, opts.messages) < 1:
        parser.error("--duration, --rounds and --messages must be >= 1")
    if opts.profile and py_spy() is None:
        parser.error("--profile needs py-spy: .venv/bin/pip install py-spy")
    return opts


def variants_of(opts: argparse.Namespace) -> list[Variant]:
    both = dict(opts.env)
    return [
        Variant("A", opts.a, {**both, **dict(opts.a_env)}),
        Variant("B", opts.b, {**both, **dict(opts.b_env)}),
    ]


# -- the stacks -------------------------------------------------------------------


@contextlib.contextmanager
def checked_out(variants: list[Variant]) -> Iterator[None]:
    """Each variant's code: a worktree per revision (one for both if they are the same
    commit), removed at the end; or this checkout."""
    with contextlib.ExitStack() as trees:
        by_commit: dict[str, tuple[Path, dict[str, Any]]] = {}
        for v in variants:
            if v.working_tree:
                v.info = describe(v.rev)
                continue
            try:
                commit = git("rev-parse", "--verify", "--quiet", f"{v.rev}^{{commit}}")
            except RuntimeError:
                raise RuntimeError(f"--{v.label.lower()} {v.rev}: not a revision") from None
            if commit not in by_commit:
                by_commit[commit] = trees.enter_context(checkout(commit))
            v.code, info = by_commit[commit]
            v.info = {**info, "rev": v.rev}
        yield


def same_code(v: Variant) -> tuple[str, dict[str, str]]:
    """What tells two variants apart: the commit (the working tree's, if it has changes:
    its own) and the settings."""
    dirty = v.working_tree and v.info.get("dirty")
    return ("working tree" if dirty else str(v.info.get("commit")), v.env)


def probe(side: Side) -> dict[str, Any]:
    """A send and a pull through the stack: it answers, and reads back what it stored."""
    chat = "abprobe0:abprobe1"
    text = f"probe of {side.label}"
    body = orjson.dumps({"chat": chat, "sender": "abprobe0", "text": text})
    sent, raw = http("POST", f"{side.url}/api/send", body)
    if sent != 200:
        raise RuntimeError(f"{side.label}: POST /api/send answered {sent} {raw[:200]!r}")
    pulled, raw = http("GET", f"{side.url}/api/pull?chat={chat}&reverse=true&limit=1")
    messages = orjson.loads(raw).get("messages", []) if pulled == 200 else []
    if not messages or messages[0].get("text") != text:
        raise RuntimeError(f"{side.label}: the probe does not read back: {pulled} {raw[:200]!r}")
    return {"send_status": sent, "pull_status": pulled}


def preload(side: Side, messages: int, seed: int) -> dict[str, Any]:
    """The workload chats as python -m bench loads them; read back through the API."""
    chats = [(dataset.workload_chat(i), messages) for i in range(dataset.WORKLOAD_CHATS)]
    started = time.monotonic()
    client = side.redis()
    try:
        loaded = dataset.preload(client, chats, seed)
    finally:
        client.close()
    seconds = time.monotonic() - started
    chat = dataset.workload_chat(0)
    status, raw = http("GET", f"{side.url}/api/pull?chat={chat}&cursor=0&limit=10")
    page = orjson.loads(raw) if status == 200 else {}
    if len(page.get("messages", [])) != min(10, messages) or page.get("has_more") != (
        messages > 10
    ):
        raise RuntimeError(
            f"{side.label}: a preloaded chat reads back wrong: {status} {raw[:300]!r}"
        )
    return {
        "chats": len(loaded),
        "messages": sum(item.count for item in loaded),
        "seconds": round(seconds, 2),
    }


def settle(side: Side) -> None:
    """Rewrite the AOF now and wait: no rewrite (a fork) during the next runs."""
    client = side.redis()
    try:
        dataset.wait_for_aof_rewrite(client)
    finally:
        client.close()


# -- runs -------------------------------------------------------------------------


class Runner:
    """The runs of one A/B session, in order, with a line per run on stdout."""

    def __init__(self, opts: argparse.Namespace, out: Path, report: dict[str, Any]) -> None:
        self.opts = opts
        self.out = out
        self.report = report
        self.rows: list[dict[str, Any]] = report["runs"]
        self.sides: dict[str, Side] = {}
        self.pong: Child | None = None
        self.done = 0
        self.planned = 0
        self.started = time.monotonic()

    def workloads(self) -> list[str]:
        return [w for w in self.opts.workloads if w in WORKLOADS]

    def order(self, round_no: int, cell: int) -> tuple[str, ...]:
        """A B in the first cell of the first round, then flipped from cell to cell and
        from round to round: each cell gets both orders over two rounds."""
        return LABELS if (round_no + cell) % 2 == 1 else LABELS[::-1]

    def progress(self, row: dict[str, Any]) -> None:
        self.done += 1
        elapsed = time.monotonic() - self.started
        left = elapsed / self.done * (self.planned - self.done) if self.done else 0
        cpu = row["cpu_us_per_request"].get("total")
        state = "ok" if row["ok"] else f"FAILED: {row['failure']}"
        print(
            f"[{self.done}/{self.planned}, ~{left:.0f} s left] round {row['round']} "
            f"{row['workload']} c={row['connections']} {row['variant']}: "
            f"{row['rps']:,.0f} req/s, p99 {fmt(row['p99_ms'], 2)} ms, "
            f"{fmt(cpu, 1)} CPU µs/req, other cores {fmt(row['other_cores'], 2)}, {state}",
            flush=True,
        )

    def warm_up(self, what: str, url: str, lua: str) -> None:
        """A short unmeasured wrk run; its errors are noted (and fail a smoke run)."""
        time.sleep(PAUSE_S)
        out = wrk_runner.run_wrk(
            url, wrk_runner.script(lua), WARM_UP_CONNECTIONS, WARM_UP_S, self.opts.seed
        )
        if out.errors or out.failure:
            self.report["warm_up_errors"].append(
                {"what": what, "errors": out.errors, "failure": out.failure}
            )
            print(f"warm-up of {what}: {out.failure or f'{out.errors} errors'}", file=sys.stderr)

    def run(self, variant: str, workload: str, connections: int, round_no: int) -> dict[str, Any]:
        """One measured wrk run of a variant (or of pong)."""
        o = self.opts
        side = self.sides.get(variant)
        if side is None:
            assert self.pong is not None
            url, lua = f"{self.pong.url}/ping", "fixed"
            roles = {PONG: [self.pong.pid]}
        else:
            url, lua, roles = side.url, workload, side.target.roles
        rewrites = aof_rewrites(side) if side is not None else 0
        time.sleep(PAUSE_S)
        result = measure(
            f"{workload} {variant}",
            "ab",
            connections,
            {"variant": variant, "round": round_no, "workload": workload},
            roles,
            lambda: wrk_runner.run_wrk(
                url, wrk_runner.script(lua), connections, o.duration, o.seed
            ),
        )
        row: dict[str, Any] = {
            "round": round_no,
            "variant": variant,
            "workload": workload,
            "connections": connections,
            "profiled": False,
            **row_of(result),
        }
        if side is not None:
            row["aof_rewrites_during"] = aof_rewrites(side) - rewrites
        return row

    def rounds(self) -> None:
        o = self.opts
        workloads = self.workloads()
        per_round = len(o.connections) * (len(workloads) * 2 + (PONG in o.workloads))
        self.planned = o.rounds * per_round
        self.started = time.monotonic()
        for round_no in range(1, o.rounds + 1):
            for side in self.sides.values():
                settle(side)
            cell = 0
            for c in o.connections:
                if PONG in o.workloads:
                    self.record(self.run(PONG, PONG, c, round_no))
                for workload in workloads:
                    for label in self.order(round_no, cell):
                        self.record(self.run(label, workload, c, round_no))
                    cell += 1

    def record(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        self.progress(row)

    # -- profiles -----------------------------------------------------------------

    def profiles(self) -> None:
        """One run per variant and workload, at the highest concurrency, under py-spy."""
        c = max(self.opts.connections)
        folder = self.out / "profile"
        folder.mkdir(exist_ok=True)
        self.planned += len(self.workloads()) * len(self.sides)
        for workload in self.workloads():
            for side in self.sides.values():
                self.record(self.profiled_run(side, workload, c, folder))

    def profiled_run(self, side: Side, workload: str, c: int, folder: Path) -> dict[str, Any]:
        binary = py_spy()
        assert binary is not None
        seconds = self.opts.duration + 3  # from before the run starts to after it ends
        spies: list[tuple[str, Path, subprocess.Popen[bytes], Path]] = []
        for tier in PROFILE_TIERS:
            for pid in side.target.roles.get(tier, []):
                stem = f"{side.label}-{workload}-c{c}-{tier}"
                raw = folder / f"{stem}.collapsed.txt"
                argv = [
                    binary, "record", "--pid", str(pid), "--subprocesses", "--function",
                    "--rate", str(PROFILE_RATE), "--duration", str(seconds),
                    "--format", "raw", "--output", str(raw),
                ]  # fmt: skip
                log = folder / f"{stem}.log"
                with log.open("wb") as sink:
                    proc = subprocess.Popen(
                        argv, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT
                    )
                spies.append((tier, raw, proc, log))
        try:
            time.sleep(PAUSE_S)  # py-spy attaches
            row = self.run(side.label, workload, c, 0)
        except BaseException:
            for _, _, proc, _ in spies:
                proc.kill()
                proc.wait()
            raise
        row["profiled"] = True
        files: dict[str, Any] = {}
        for tier, raw, proc, log in spies:
            try:
                proc.wait(timeout=seconds + 30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            entry: dict[str, Any] = {"raw": raw.name, "status": proc.returncode}
            if raw.exists() and raw.stat().st_size:
                text = raw.with_name(raw.name.replace(".collapsed.txt", ".top.txt"))
                title = (
                    f"py-spy: {TIER_NAMES[tier]} of {side.label} ({side.code}) during "
                    f"{workload} c={c}, {PROFILE_RATE} Hz, idle stacks left out"
                )
                text.write_text(top_functions(raw.read_text(), title, PROFILE_TOP))
                entry["top"] = text.name
            else:
                entry["error"] = log.read_text(errors="replace").strip()[-500:]
            files[tier] = entry
        row["profile"] = files
        return row


def py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def top_functions(collapsed: str, title: str, top: int) -> str:
    """A ``py-spy top``-like table from py-spy's raw (collapsed) output: the functions
    with the most samples of their own (the innermost frame), and their total share
    (any frame of the stack), and the samples per process."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    processes: Counter[str] = Counter()
    samples = 0
    for line in collapsed.splitlines():
        stack_text, _, count_text = line.rpartition(" ")
        if not stack_text or not count_text.isdigit():
            continue
        count = int(count_text)
        where, frames = split_stack(stack_text)
        if where:
            processes[where] += count
        if not frames:
            continue
        samples += count
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count
    lines = [title, f"{samples} samples", ""]
    lines += [f"{'own %':>7} {'total %':>8} {'own':>7}  function (file:first line)"]
    for frame, count in own.most_common(top):
        share, whole = 100 * count / samples, 100 * total[frame] / samples
        lines.append(f"{share:7.2f} {whole:8.2f} {count:7d}  {frame}")
    if processes:
        lines += ["", "samples per process:"]
        lines += [f"{count:7d}  {name}" for name, count in processes.most_common()]
    return "\n".join(lines) + "\n"


def split_stack(text: str) -> tuple[str, list[str]]:
    """(the innermost process, the frames outermost first) of one collapsed stack.

    With --subprocesses py-spy puts a frame ``process <pid>:"<command line>"`` for
    each process from the one attached to the one sampled; a command line may hold
    ";" (Sanic's workers: ``-c from multiprocessing.spawn import spawn_main; ...``).
    """
    parts = text.split(";")
    where = ""
    while parts and parts[0].startswith("process "):
        label = parts.pop(0)
        while label.count('"') % 2 == 1 and parts:  # a ";" inside the quotes
            label += ";" + parts.pop(0)
        where = label
    return where, parts


# -- summary ----------------------------------------------------------------------


def rps(row: dict[str, Any]) -> float | None:
    value: float | None = row["rps"]
    return value


def key(name: str) -> Pick:
    def pick(row: dict[str, Any]) -> float | None:
        value: float | None = row.get(name)
        return value

    return pick


METRICS: dict[str, Pick] = {
    "rps": rps,
    "p50_ms": key("p50_ms"),
    "p99_ms": key("p99_ms"),
    **{f"cpu_{role}": cpu_of(role) for role in ("total", *TIERS)},
    "client_cpu": key("client_cpu_us_per_request"),
    "other_cores": key("other_cores"),
    "x_pong": key("x_pong"),
    "cpu_x_pong": key("cpu_x_pong"),
}
PAIRED = ("rps", "cpu_total", "p99_ms")


def assign_pong_ratios(rows: list[dict[str, Any]]) -> None:
    """Each run's req/s and total CPU per request over those of the pong of its round."""
    pong = {
        (r["round"], r["connections"]): r
        for r in rows
        if r["variant"] == PONG and r["ok"] and not r["profiled"]
    }
    for r in rows:
        p = pong.get((r["round"], r["connections"]))
        if r["variant"] == PONG or p is None or not r["ok"]:
            continue
        r["x_pong"] = ratio(r["rps"], p["rps"])
        r["cpu_x_pong"] = ratio(
            r["cpu_us_per_request"].get("total"), p["cpu_us_per_request"].get("total")
        )


def medians(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {name: median_of(rows, pick) for name, pick in METRICS.items()}
    out["runs"] = len(rows)
    out["ok_runs"] = sum(r["ok"] for r in rows)
    out["errors"] = sum(r["errors"] for r in rows)
    return out


def summarize(rows: list[dict[str, Any]], opts: argparse.Namespace) -> dict[str, Any]:
    measured = [r for r in rows if not r["profiled"]]
    cells_out: list[dict[str, Any]] = []
    for workload in [w for w in opts.workloads if w in WORKLOADS]:
        for c in opts.connections:
            mine = [r for r in measured if r["workload"] == workload and r["connections"] == c]
            per = {label: medians([r for r in mine if r["variant"] == label]) for label in LABELS}
            b_over_a = {
                name: ratio(per["B"][name], per["A"][name])
                for name in METRICS
                if name != "other_cores"
            }
            paired: dict[str, Any] = {}
            for name in PAIRED:
                pick = METRICS[name]
                values: list[float] = []
                for round_no in sorted({r["round"] for r in mine}):
                    pair = {r["variant"]: r for r in mine if r["round"] == round_no and r["ok"]}
                    if "A" in pair and "B" in pair:
                        got = ratio(pick(pair["B"]), pick(pair["A"]))
                        if got is not None:
                            values.append(got)
                paired[name] = {
                    "median": round(statistics.median(values), 3) if values else None,
                    "min": min(values) if values else None,
                    "max": max(values) if values else None,
                    "rounds": len(values),
                }
            cells_out.append(
                {
                    "workload": workload,
                    "connections": c,
                    **per,
                    "B/A": b_over_a,
                    "paired_B/A": paired,
                }
            )
    pong = []
    for c in opts.connections:
        mine = [r for r in measured if r["variant"] == PONG and r["connections"] == c]
        if mine:
            pong.append({"connections": c, **medians(mine)})
    noise = [r["other_cores"] for r in measured if r["other_cores"] is not None]
    by_variant = {
        label: median_of([r for r in measured if r["variant"] == label], key("other_cores"))
        for label in (*LABELS, PONG)
    }
    return {
        "cells": cells_out,
        "pong": pong,
        "other_cores": {
            "median": statistics.median(noise) if noise else None,
            "max": max(noise) if noise else None,
            "by_variant": by_variant,
        },
    }


def markdown(report: dict[str, Any]) -> Iterator[str]:
    yield f"# A/B: {report['started']}\n\n"
    yield f"Command: `{report['command']}`\n\n"
    for v in report.get("variants", []):
        yield f"- **{v['label']}** = {v['description']}\n"
    yield "\n"
    machine = report.get("machine", {})
    yield (
        f"Machine: {machine.get('cpu_count')} cores ({machine.get('cpu_model')}), load average "
        f"{fmt(machine.get('loadavg_start', [None])[0], 2)} at start, "
        f"{fmt((report.get('loadavg_end') or [None])[0], 2)} at end. Settings: "
        f"workloads {','.join(report['workloads'])}, "
        f"c={','.join(map(str, report['connections']))}, "
        f"{report['rounds']} rounds of {report['duration']} s runs, "
        f"{report['messages_per_chat']} messages preloaded per workload chat"
        f"{', the same code and settings on both sides: an A/A run' if report.get('same') else ''}."
        "\n\n"
    )
    if report.get("error"):
        yield f"**The run broke**: {report['error']}\n\n"
    summary = report.get("summary")
    if summary:
        yield from summary_markdown(summary)
    yield from runs_markdown(report)
    if report.get("profiles"):
        yield "\n## Profiles (py-spy, not in the medians)\n\n"
        yield (
            "One run per variant and workload at the highest concurrency, py-spy recording "
            f"each Python tier (and its child processes) at {PROFILE_RATE} Hz. "
            "`*.collapsed.txt`: the raw stacks (collapsed format, opens in speedscope.app "
            "or flamegraph.pl); `*.top.txt`: the top functions by own time.\n\n"
        )
        for p in report["profiles"]:
            for tier, entry in p["profile"].items():
                files = ", ".join(f"`profile/{entry[k]}`" for k in ("raw", "top") if k in entry)
                problem = f" (py-spy: {entry['error']})" if "error" in entry else ""
                yield (
                    f"- {p['variant']} {p['workload']} c={p['connections']}, "
                    f"{TIER_NAMES[tier]}: {files}{problem}; that run: {p['rps']:,.0f} req/s\n"
                )
    failed = [r for r in report.get("runs", []) if not r["ok"]]
    warm = report.get("warm_up_errors", [])
    if failed or warm:
        yield "\n## Failed runs\n\n"
        for r in failed:
            what = f"{r['workload']} c={r['connections']} {r['variant']}"
            yield f"- round {r['round']} {what}: {r['failure']}\n"
        for w in warm:
            yield f"- warm-up of {w['what']}: {w['failure'] or w['errors']} errors\n"


def summary_markdown(summary: dict[str, Any]) -> Iterator[str]:
    yield "## B against A\n\n"
    yield (
        "Medians of the rounds. B/A: of the medians; paired: the median of each round's own "
        "B/A, with its range (the spread says how far to trust a difference). req/s above "
        "1.00 and CPU below 1.00 are better for B. CPU: µs per request of the three tiers' "
        "process trees together.\n\n"
    )
    yield cells(
        "workload", "c", "req/s A", "req/s B", "B/A", "paired B/A (range)",
        "CPU µs/req A", "CPU B", "B/A", "paired B/A (range)", "p99 ms A", "p99 B", "B/A",
    ) + cells(*["---"] * 13)  # fmt: skip
    for cell in summary["cells"]:
        a, b, ba, paired = cell["A"], cell["B"], cell["B/A"], cell["paired_B/A"]
        yield cells(
            cell["workload"],
            cell["connections"],
            fmt(a["rps"]),
            fmt(b["rps"]),
            fmt(ba["rps"], 3),
            paired_text(paired["rps"]),
            fmt(a["cpu_total"], 1),
            fmt(b["cpu_total"], 1),
            fmt(ba["cpu_total"], 3),
            paired_text(paired["cpu_total"]),
            fmt(a["p99_ms"], 2),
            fmt(b["p99_ms"], 2),
            fmt(ba["p99_ms"], 3),
        )
    yield "\n## Per tier, and against the pong ceiling\n\n"
    yield (
        "CPU µs per request of each tier (front end, RPC, Redis), the load generator's "
        "(client), x pong: req/s over the pong run's of the same round and concurrency, "
        "CPU x pong: total CPU per request over pong's (the bare Sanic request's), both "
        "medians of the rounds' ratios. other cores: busy cores that were neither the "
        "servers nor wrk (noise).\n\n"
    )
    yield cells(
        "workload", "c", "variant", "req/s", "p50 ms", "p99 ms", "front end", "RPC", "Redis",
        "total", "client", "x pong", "CPU x pong", "other cores", "ok runs", "errors",
    ) + cells(*["---"] * 16)  # fmt: skip
    for cell in summary["cells"]:
        for label in LABELS:
            m = cell[label]
            yield cells(
                cell["workload"],
                cell["connections"],
                label,
                fmt(m["rps"]),
                fmt(m["p50_ms"], 2),
                fmt(m["p99_ms"], 2),
                *(fmt(m[f"cpu_{t}"], 1) for t in (*TIERS, "total")),
                fmt(m["client_cpu"], 1),
                fmt(m["x_pong"], 3),
                fmt(m["cpu_x_pong"], 2),
                fmt(m["other_cores"], 2),
                f"{m['ok_runs']}/{m['runs']}",
                m["errors"],
            )
    if summary["pong"]:
        yield "\n## Pong ceiling (bench/pong.py, the same for A and B)\n\n"
        yield cells(
            "c", "req/s", "p50 ms", "p99 ms", "CPU µs/req", "client", "other cores"
        ) + cells(*["---"] * 7)
        for p in summary["pong"]:
            yield cells(
                p["connections"],
                fmt(p["rps"]),
                fmt(p["p50_ms"], 2),
                fmt(p["p99_ms"], 2),
                fmt(p["cpu_total"], 1),
                fmt(p["client_cpu"], 1),
                fmt(p["other_cores"], 2),
            )
    noise = summary["other_cores"]
    by = noise["by_variant"]
    yield (
        f"\nOther cores (noise from the rest of the machine) over all runs: median "
        f"{fmt(noise['median'], 2)}, most {fmt(noise['max'], 2)}; median in A's runs "
        f"{fmt(by['A'], 2)}, B's {fmt(by['B'], 2)}, pong's {fmt(by[PONG], 2)}. Compare "
        "only when it is low and alike on both sides.\n\n"
    )


def paired_text(p: dict[str, Any]) -> str:
    if p["median"] is None:
        return "-"
    if p["rounds"] < 2:
        return fmt(p["median"], 3)
    return f"{fmt(p['median'], 3)} ({fmt(p['min'], 3)}-{fmt(p['max'], 3)})"


def runs_markdown(report: dict[str, Any]) -> Iterator[str]:
    runs = [r for r in report.get("runs", []) if not r["profiled"]]
    if not runs:
        return
    yield "## Every run, in order\n\n"
    yield cells(
        "round", "workload", "c", "variant", "req/s", "p50 ms", "p99 ms", "front end", "RPC",
        "Redis", "total", "x pong", "other cores", "AOF rewrites", "errors",
    ) + cells(*["---"] * 15)  # fmt: skip
    for r in runs:
        cpu = r["cpu_us_per_request"]
        yield cells(
            r["round"],
            r["workload"],
            r["connections"],
            r["variant"],
            fmt(r["rps"]) if r["ok"] else "FAILED",
            fmt(r["p50_ms"], 2),
            fmt(r["p99_ms"], 2),
            *(fmt(cpu.get(t), 1) for t in TIERS),
            fmt(cpu.get("total"), 1),
            fmt(r.get("x_pong"), 3),
            fmt(r["other_cores"], 2),
            r.get("aof_rewrites_during", "-"),
            r["errors"],
        )


# -- main -------------------------------------------------------------------------


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # unwind: every process started is stopped


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    opts = parse(argv)
    stack.raise_file_limit()
    signal.signal(signal.SIGTERM, _on_sigterm)
    started = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out: Path = opts.out / f"{started}-ab"
    for n in range(2, 100):  # two runs started in the same second get folders of their own
        if not out.exists():
            break
        out = opts.out / f"{started}-ab-{n}"
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "started": started,
        "command": shlex.join(["python", "-m", "bench.ab", *argv]),
        "workloads": list(opts.workloads),
        "connections": list(opts.connections),
        "rounds": opts.rounds,
        "duration": opts.duration,
        "messages_per_chat": opts.messages,
        "smoke": opts.smoke,
        "machine": machine_info(),
        "runs": [],
        "warm_up_errors": [],
    }
    runner = Runner(opts, out, report)
    variants = variants_of(opts)

    def run() -> None:
        with checked_out(variants):
            report["variants"] = [
                {
                    "label": v.label,
                    "description": v.description(),
                    "rev": v.rev,
                    "env": v.env,
                    **v.info,
                }
                for v in variants
            ]
            report["same"] = same_code(variants[0]) == same_code(variants[1])
            try:
                for v in variants:
                    code = "working tree" if v.working_tree else str(v.info["commit"])
                    runner.sides[v.label] = start_side(
                        v.label, code, logs, v.label.lower(), v.code, v.env
                    )
                report["stacks"] = {
                    label: {
                        "url": s.url,
                        "settings": s.target.env,
                        "pids": s.target.roles,
                        "imports": s.imports,
                    }
                    for label, s in runner.sides.items()
                }
                report["probe"] = {label: probe(s) for label, s in runner.sides.items()}
                report["preload"] = {
                    label: preload(s, opts.messages, opts.seed) for label, s in runner.sides.items()
                }
                if PONG in opts.workloads:
                    workers = os.cpu_count() or 1
                    runner.pong = stack.start_pong(logs, workers)
                    report["pong_workers"] = workers
                    runner.warm_up("pong", f"{runner.pong.url}/ping", "fixed")
                for label, s in runner.sides.items():
                    runner.warm_up(label, s.url, "mixed")
                runner.rounds()
                if opts.profile:
                    runner.profiles()
            finally:
                if runner.pong is not None:
                    runner.pong.stop()
                for s in reversed(list(runner.sides.values())):
                    s.target.stop()

    status = measured(report, out, run)
    report["loadavg_end"] = os.getloadavg()
    rows = report["runs"]
    assign_pong_ratios(rows)
    report["summary"] = summarize(rows, opts)
    report["profiles"] = [r for r in rows if r["profiled"]]
    write_json(out / "results.json", report)
    (out / "summary.md").write_text("".join(markdown(report)))
    print(out / "summary.md")
    if status == 0 and opts.smoke:
        failed = [r for r in rows if not r["ok"]]
        if failed or report["warm_up_errors"]:
            print(
                f"smoke: {len(failed)} run(s) and {len(report['warm_up_errors'])} warm-up(s) "
                "had failed requests",
                file=sys.stderr,
            )
            status = 1
    return status


if __name__ == "__main__":
    raise SystemExit(main())
