"""The benchmark from start to report: options, the plan, then the three report files."""

from __future__ import annotations

import os
import shlex
import signal
import sys
import time
import traceback
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

from bench import chart, cli, report, stack
from bench.plan import Session
from bench.results import machine_info, write_json
from http_srv.settings import Settings as HttpSettings
from rpc_srv.settings import Settings as RpcSettings


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    # Unwind like Ctrl-C, so the session stops every process it started.
    raise KeyboardInterrupt


def _stack_meta(session: Session) -> dict[str, Any]:
    s = session.stack
    if s is None:
        return {"mode": "not started", "url": None}
    meta: dict[str, Any] = {
        "mode": s.mode,
        "url": s.url,
        "redis_url": s.redis_url,
        "env": s.env,
        "pids": s.roles,
        "redis": session.redis_info,
    }
    if s.mode == "started":
        meta["http_workers"] = int(s.env.get("HTTP_WORKERS", HttpSettings().workers))
        meta["rpc_workers"] = int(s.env.get("RPC_WORKERS", RpcSettings().workers))
    return meta


def write_report(session: Session, meta: dict[str, Any]) -> Path:
    """results.json, summary.md and chart.png in the session's directory."""
    out = session.out_dir
    results = session.results
    data = {
        **meta,
        "preload": session.preload,
        "memory": [f.as_dict() for f in session.memory],
        "runs": [r.as_dict() for r in results],
        "failed_runs": len(session.failed()),
        "warm_up_errors": session.warm_up_errors,
        "notes": session.notes,
    }
    write_json(out / "results.json", data)
    summary = out / "summary.md"
    summary.write_text(report.summary(meta, results, session.memory, session.notes))
    chart.draw(results, out / "chart.png", f"pullchat {meta['timestamp']}")
    return summary


def main(argv: list[str] | None = None) -> int:
    options = cli.parse(argv)
    stack.raise_file_limit()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    session = Session(options, options.out / stamp)
    signal.signal(signal.SIGTERM, _on_sigterm)
    machine = machine_info()
    started = time.monotonic()
    status = 0
    try:
        session.execute()
    except KeyboardInterrupt:
        session.note("interrupted: the report holds the runs done so far")
        status = 130
    except Exception as exc:
        (session.logs / "error.txt").write_text(traceback.format_exc())
        session.note(f"stopped by an error: {exc!r} (see logs/error.txt)")
        status = 2
    session.assign_pong_ratios()
    machine["loadavg_end"] = os.getloadavg()
    options_dict = asdict(options)
    options_dict["out"] = str(options.out)
    meta = {
        "timestamp": stamp,
        "command": shlex.join(["python", "-m", "bench", *(sys.argv[1:] if argv is None else argv)]),
        "options": options_dict,
        "stack": _stack_meta(session),
        "machine": machine,
        "elapsed_s": round(time.monotonic() - started, 1),
    }
    summary = write_report(session, meta)
    failed = session.failed()
    if options.smoke and status == 0 and (failed or session.warm_up_errors):
        print(f"bench: smoke FAILED: {len(failed)} failed run(s)", file=sys.stderr)
        status = 1
    print(summary)
    return status
