"""Command-line options of ``python -m bench``, turned into one immutable Options."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
WORKLOADS = ("send", "pull", "mixed")  # the wrk scripts of bench/wrk
# Comparisons and ceilings, all by default.
EXTRAS = ("hey", "scale", "batching", "layouts", "pong", "redis")
SMOKE_DURATION = 2
SMOKE_CONNECTIONS = (1, 20)
BATCHING_CONNECTIONS = 50
BATCHING_ROUNDS = 2  # alternating batched / unbatched runs per workload
LAYOUT_CONNECTIONS = 50
LAYOUT_ROUNDS = 3  # alternating stream / sorted-set runs per workload


@dataclass(frozen=True)
class Options:
    duration: int
    connections: tuple[int, ...]
    workloads: tuple[str, ...]  # from WORKLOADS + EXTRAS
    smoke: bool
    http_workers: int | None
    rpc_workers: int | None
    out: Path
    url: str | None
    redis_url: str | None
    rpc_url: str | None
    seed: int

    @property
    def scale_sizes(self) -> tuple[int, ...]:
        return (10**2, 10**3) if self.smoke else (10**2, 10**4, 10**6)

    @property
    def messages_per_chat(self) -> int:
        """Preloaded into each of the 1000 workload chats: a few pages each."""
        return 20 if self.smoke else 100

    @property
    def redis_requests(self) -> int:
        """-n of redis-benchmark: a few seconds at the rates Redis reaches here."""
        return 10_000 if self.smoke else max(20_000, 10_000 * self.duration)

    def wants(self, name: str) -> bool:
        return name in self.workloads


def positive_ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(sorted({int(v) for v in text.split(",") if v.strip()}))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of integers: {text!r}") from None
    if not values or values[0] < 1:
        raise argparse.ArgumentTypeError("concurrency levels must be integers >= 1")
    return values


def _names(text: str) -> tuple[str, ...]:
    names = tuple(dict.fromkeys(v.strip() for v in text.split(",") if v.strip()))
    unknown = [n for n in names if n not in WORKLOADS + EXTRAS]
    if unknown or not names:
        known = ", ".join(WORKLOADS + EXTRAS)
        raise argparse.ArgumentTypeError(f"unknown workload(s) {unknown}; known: {known}")
    return names


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def parse(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark pullchat under wrk and hey against its ceilings; "
        "writes results.json, summary.md and chart.png.",
    )
    parser.add_argument("--duration", type=_positive, default=10, help="seconds per run (10)")
    parser.add_argument(
        "--connections",
        type=positive_ints,
        default=(1, 20, 50, 200),
        help="concurrency levels, comma-separated (1,20,50,200)",
    )
    parser.add_argument(
        "--workloads",
        type=_names,
        default=WORKLOADS + EXTRAS,
        help="comma-separated subset of " + ",".join(WORKLOADS + EXTRAS) + " (all)",
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help=f"{SMOKE_DURATION} s per run, c=1,20, small preload; exit 1 on any request error",
    )
    parser.add_argument("--http-workers", type=_positive, help="HTTP_WORKERS of the front end")
    parser.add_argument("--rpc-workers", type=_positive, help="RPC_WORKERS of the RPC service")
    parser.add_argument("--out", type=Path, default=RESULTS, help="report directory parent")
    parser.add_argument(
        "--url", help="measure the front end already running here; start and stop nothing"
    )
    parser.add_argument(
        "--redis-url", help="with --url: its Redis, for preloading, data scale, redis-benchmark"
    )
    parser.add_argument("--rpc-url", help="with --url: its RPC service, to find its processes")
    parser.add_argument("--seed", type=int, default=1, help="random seed of data and scripts")
    args = parser.parse_args(argv)
    if args.url is None and (args.redis_url or args.rpc_url):
        parser.error("--redis-url and --rpc-url go with --url")
    if args.url is not None and (args.http_workers or args.rpc_workers):
        parser.error("--http-workers and --rpc-workers only apply to a stack started here")
    smoke = bool(args.smoke)
    return Options(
        duration=SMOKE_DURATION if smoke else args.duration,
        connections=SMOKE_CONNECTIONS if smoke else args.connections,
        workloads=args.workloads,
        smoke=smoke,
        http_workers=args.http_workers,
        rpc_workers=args.rpc_workers,
        out=args.out,
        url=args.url.rstrip("/") if args.url else None,
        redis_url=args.redis_url,
        rpc_url=args.rpc_url,
        seed=args.seed,
    )
