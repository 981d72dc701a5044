"""Running a load generator as a child process that always ends by itself."""

from __future__ import annotations

import subprocess

GRACE_S = 30.0  # beyond its own duration, before a hung tool is killed


class ToolError(RuntimeError):
    """A load generator could not run, or ran past its time and was killed."""


def run_tool(argv: list[str], timeout: float) -> tuple[int, str, str]:
    """(exit status, stdout, stderr) of `argv`, killed after `timeout` seconds."""
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
    except OSError as exc:
        raise ToolError(f"{argv[0]}: {exc}") from exc
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise ToolError(f"{argv[0]} ran past {timeout:g} s and was killed") from None
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return proc.returncode, out, err
