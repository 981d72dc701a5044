"""prometheus_client set-up shared by both tiers.

With several worker processes, each writes its samples to files in
``PROMETHEUS_MULTIPROC_DIR`` and ``/metrics`` sums them. That variable must be
set before prometheus_client is imported, so each server's ``main`` calls
``prepare_multiprocess_dir`` first and imports its application afterwards.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare_multiprocess_dir() -> str:
    """Point prometheus_client at an empty directory for this run, made if need be."""
    given = os.environ.get(ENV)
    if given:
        Path(given).mkdir(parents=True, exist_ok=True)
        for stale in Path(given).glob("*.db"):
            stale.unlink()
        return given
    path = tempfile.mkdtemp(prefix="pullchat-metrics-")
    os.environ[ENV] = path
    owner = os.getpid()

    def remove() -> None:
        if os.getpid() == owner:  # forked workers inherit this hook
            shutil.rmtree(path, ignore_errors=True)

    atexit.register(remove)
    return path


def render() -> bytes:
    """The current samples in Prometheus's text format (summed over processes)."""
    from prometheus_client import CollectorRegistry, generate_latest, multiprocess

    if os.environ.get(ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest()


def mark_process_dead(pid: int) -> None:
    """Drop a dead worker's live gauges (counters and histograms are kept)."""
    if os.environ.get(ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]


CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
