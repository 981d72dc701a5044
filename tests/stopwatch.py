"""Time a stop of the run command: from the signal to every process it started gone.

Run as ``python -m tests.stopwatch DELAY LOG``: starts ``python -m launcher``
with this environment and its output in LOG, sends SIGTERM (or ``--signal``)
DELAY seconds after starting it, and prints one JSON object: the seconds until
the last descendant was gone, the run command's exit status and the pids
still there at the deadline (then killed).

This process makes itself a child subreaper, so every descendant, however
deep and whoever its parent was, is handed to it when orphaned: once it has
no child left to wait for, nothing the run command started is running.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import subprocess
import sys
import time

import orjson
import psutil

PR_SET_CHILD_SUBREAPER = 36


def reap_all(deadline: float, statuses: dict[int, int]) -> bool:
    """Wait for every child (orphans included) until `deadline`; true if none is left."""
    while time.monotonic() < deadline:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return True
        if pid == 0:
            time.sleep(0.005)
        else:
            statuses[pid] = os.waitstatus_to_exitcode(status)
    return False


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("delay", type=float)
    parser.add_argument("log")
    parser.add_argument("--signal", default="SIGTERM")
    parser.add_argument("--deadline", type=float, default=30.0)
    args = parser.parse_args()
    if ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1) != 0:
        raise SystemExit("cannot become a child subreaper")
    with open(args.log, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "launcher"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    time.sleep(args.delay)
    tree = psutil.Process().children(recursive=True)
    signalled = time.monotonic()
    proc.send_signal(signal.Signals[args.signal])
    statuses: dict[int, int] = {}
    gone = reap_all(signalled + args.deadline, statuses)
    elapsed = time.monotonic() - signalled
    leftover = [p.pid for p in psutil.Process().children(recursive=True)]
    for pid in leftover:
        os.kill(pid, signal.SIGKILL)
    reap_all(time.monotonic() + 5, statuses)
    result = {
        "seconds": elapsed,
        "status": statuses.get(proc.pid),
        "gone": gone,
        "leftover": leftover,
        "processes": len(tree),
    }
    print(orjson.dumps(result).decode(), flush=True)


if __name__ == "__main__":
    main()
