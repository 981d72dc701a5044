"""CPU time of process trees from /proc, and finding the processes behind a port.

A server's CPU is its own plus its descendants': Sanic and gunicorn do their
work in child processes. Time is utime + stime of /proc/<pid>/stat (all
threads included), in clock ticks, read before and after a run.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

PROC = Path("/proc")
TICK = float(os.sysconf("SC_CLK_TCK"))


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (which may hold spaces)."""
    try:
        raw = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()


def parents() -> dict[int, int]:
    """pid -> parent pid, for every process visible now."""
    table: dict[int, int] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None:
                table[int(entry.name)] = int(fields[1])
    return table


def tree(roots: Iterable[int], table: dict[int, int] | None = None) -> set[int]:
    """The roots and all their descendants that are alive."""
    table = parents() if table is None else table
    children: dict[int, list[int]] = {}
    for pid, ppid in table.items():
        children.setdefault(ppid, []).append(pid)
    found: set[int] = set()
    todo = [pid for pid in roots if pid in table]
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, ()))
    return found


def cpu_seconds(pids: Iterable[int]) -> float:
    """utime + stime of these processes (those that still exist), in seconds."""
    ticks = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields is not None:
            # fields[0] is the state (stat field 3): utime, stime are fields 14, 15.
            ticks += int(fields[11]) + int(fields[12])
    return ticks / TICK


def snapshot(roles: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds used so far by each role's process trees (one /proc scan)."""
    table = parents()
    return {role: cpu_seconds(tree(roots, table)) for role, roots in roles.items()}


def machine_busy_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    first = (PROC / "stat").read_text().splitlines()[0].split()
    values = [int(v) for v in first[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    # guest time is already counted in user time
    total = sum(values[:8])
    return (total - idle) / TICK, total / TICK


def _cmdline(pid: int) -> bytes:
    try:
        return (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return b""


def _listening_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for name in ("tcp", "tcp6"):
        try:
            lines = (PROC / "net" / name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:  # LISTEN
                inodes.add(cols[9])
    return inodes


def listeners(port: int) -> set[int]:
    """The processes holding a socket that listens on TCP `port` (ours to see)."""
    targets = {f"socket:[{inode}]" for inode in _listening_inodes(port)}
    found: set[int] = set()
    if not targets:
        return found
    for entry in PROC.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            for fd in (entry / "fd").iterdir():
                if os.readlink(fd) in targets:
                    found.add(int(entry.name))
                    break
        except OSError:
            continue
    return found


def server_roots(port: int) -> list[int]:
    """The top processes of the server listening on `port`.

    gunicorn's workers listen (SO_REUSEPORT) but their master does not; Sanic's
    manager and workers all hold the socket. So climb from each listener while
    the parent listens too or runs the same command line.
    """
    holders = listeners(port)
    table = parents()
    roots: set[int] = set()
    for pid in holders:
        while True:
            parent = table.get(pid, 0)
            if parent <= 1 or parent == os.getpid():
                break
            if parent in holders or _cmdline(parent) == _cmdline(pid):
                pid = parent
            else:
                break
        roots.add(pid)
    return sorted(roots)


def rss_bytes(pids: Iterable[int]) -> int:
    """Resident memory of these processes (those that still exist), in bytes."""
    total = 0
    for pid in pids:
        try:
            status = (PROC / str(pid) / "status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1]) * 1024  # reported in kB
    return total
