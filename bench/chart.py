"""chart.png: throughput and p99 latency against concurrency, with the pong ceiling.

Only error-free runs are drawn: a failed run has no throughput to show.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt

from bench.cli import WORKLOADS
from bench.results import RunResult


def _series(results: Sequence[RunResult], name: str) -> tuple[list[int], list[float], list[float]]:
    runs = sorted((r for r in results if r.name == name and r.ok), key=lambda r: r.connections)
    levels = [r.connections for r in runs]
    rps = [r.output.rps for r in runs]
    p99 = [r.output.latency_ms.get("p99") or 0.0 for r in runs]
    return levels, rps, p99


def draw(results: Sequence[RunResult], path: Path, title: str) -> None:
    http = [r for r in results if r.group in ("workload", "pong")]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    levels = sorted({r.connections for r in http})
    for name in (*WORKLOADS, "pong"):
        x, rps, p99 = _series(http, name)
        if not x:
            continue
        style = {"linestyle": "--", "color": "black"} if name == "pong" else {}
        label = "pong ceiling" if name == "pong" else name
        left.plot(x, rps, marker="o", label=label, **style)
        right.plot(x, p99, marker="o", label=label, **style)
    for ax, ylabel in ((left, "requests/s"), (right, "p99 latency (ms)")):
        ax.set_xlabel("connections")
        ax.set_ylabel(ylabel)
        if levels:
            ax.set_xscale("log")
            ax.set_xticks(levels)
            ax.set_xticklabels([str(c) for c in levels])
            ax.minorticks_off()
        ax.grid(True, alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend()
        else:
            ax.text(0.5, 0.5, "no error-free run", ha="center", transform=ax.transAxes)
    left.set_ylim(bottom=0)
    right.set_ylim(bottom=0)
    left.set_title("throughput")
    right.set_title("p99 latency")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
