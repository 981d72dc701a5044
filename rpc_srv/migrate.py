"""``pullchat-migrate``: move a store of the sorted-set layout to streams, chat by chat.

Each chat moves in chunks of one script call each (``lua/migrate.lua``): the
chat's sorted set stays whole, and readable by the earlier version, until the
call that copies its last messages puts the stream in its place. So the
command may be stopped at any point and run again (it goes on where it
stopped), and running it on a store already migrated changes nothing. On a
Redis Cluster it scans every master and each call goes to the chat's node.
When no chat of the earlier layout is left it records the layout in the store
(``pullchat:layout``), which the RPC service checks when it starts.

    pullchat-migrate                  # REDIS_URL and REDIS_CLUSTER, as the RPC service reads them
    pullchat-migrate --redis-url redis://127.0.0.1:6379/0 --chunk 2000
    pullchat-migrate --check                # exit 1 if a migration is needed, change nothing
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from redis import exceptions as redis_errors
from redis.asyncio import Redis, RedisCluster
from redis.commands.core import AsyncScript

from contract.envvars import or_exit
from rpc_srv.store import (
    CHAT_PATTERN,
    LAYOUT,
    LAYOUT_KEY,
    is_cluster_url,
    lua,
    old_layout_chat,
)

PROGRAM = "pullchat-migrate"
CHUNK = 1000  # messages per script call: a few milliseconds of Redis time each
PASSES = 10  # scans of the key space at most, until one finds nothing to move
# Worth waiting out: a slot on the move (TRYAGAIN, redirections), a node failing over.
_PASSING = (redis_errors.ConnectionError, redis_errors.TimeoutError, redis_errors.ClusterError)
_PASSING_REPLIES = ("TRYAGAIN", "LOADING", "CLUSTERDOWN", "MASTERDOWN")
ATTEMPTS = 50
PAUSE_S = 0.1


def building_key(key: str) -> str:
    """The stream being built for chat key ``im:{a:b}``: ``migrating:{a:b}``, same slot."""
    return "migrating:" + key.removeprefix("im:")


@dataclass
class Progress:
    chats: int = 0
    messages: int = 0
    calls: int = 0


class Interrupted(Exception):
    """Stopped between two script calls (SIGINT or SIGTERM): run again to go on."""


async def _call(script: AsyncScript, keys: list[str], args: list[int | str]) -> list[int]:
    """One script call, tried again while the cluster moves the slot or fails over."""
    for attempt in range(ATTEMPTS):
        try:
            reply: list[int] = await script(keys=keys, args=args)
            return reply
        except redis_errors.ResponseError as exc:
            if not str(exc).startswith(_PASSING_REPLIES) or attempt == ATTEMPTS - 1:
                raise
        except _PASSING:
            if attempt == ATTEMPTS - 1:
                raise
        await asyncio.sleep(PAUSE_S)
    raise AssertionError("unreachable")


async def migrate_chat(
    script: AsyncScript,
    key: str,
    chunk: int,
    progress: Progress,
    stop: asyncio.Event | None = None,
) -> None:
    """Move one chat (its key ``im:{a:b}``) to a stream, a chunk per call.

    A chat that another run moved meanwhile is not counted in `progress`.
    """
    chat = key.removeprefix("im:{").removesuffix("}")
    moved = 0
    while True:
        if stop is not None and stop.is_set():
            raise Interrupted
        done, copied = await _call(script, [key, building_key(key)], [chunk, chat])
        progress.calls += 1
        progress.messages += copied
        moved += copied
        if done:
            progress.chats += moved > 0
            return


async def migrate(
    redis: Redis | RedisCluster,
    chunk: int = CHUNK,
    report: Callable[[Progress], None] | None = None,
    stop: asyncio.Event | None = None,
) -> Progress:
    """Move every chat of the sorted-set layout to a stream, then record the layout.

    Scans until a pass finds nothing left to move (a sender of the earlier
    version may still be adding chats), at most PASSES times. Once `stop` is
    set, raises Interrupted before the next script call.
    """
    script = redis.register_script(lua("migrate.lua"))
    progress = Progress()
    for _ in range(PASSES):
        found = 0
        async for raw in redis.scan_iter(match=CHAT_PATTERN, count=1000, _type="zset"):
            found += 1
            await migrate_chat(script, raw.decode(), chunk, progress, stop)
            if report is not None:
                report(progress)
        if not found and await old_layout_chat(redis) is None:
            break
    else:
        raise RuntimeError(f"chats of the sorted-set layout still appear after {PASSES} passes")
    # Streams half built for chats that are gone since (or moved by another run).
    async for raw in redis.scan_iter(match="migrating:{*", count=1000):
        chat_key = "im:" + raw.decode().removeprefix("migrating:")
        await migrate_chat(script, chat_key, chunk, Progress(), stop)
    await redis.set(LAYOUT_KEY, LAYOUT)
    return progress


async def needs_migration(redis: Redis | RedisCluster) -> bool:
    marker = await redis.get(LAYOUT_KEY)
    return marker != LAYOUT and await old_layout_chat(redis) is not None


async def connect(url: str, cluster: str, io_timeout: float) -> Redis | RedisCluster:
    """A client for the store at `url`; with cluster "auto", Redis's ``INFO cluster`` decides."""
    is_cluster = cluster == "yes" or (cluster == "auto" and await is_cluster_url(url, io_timeout))
    if is_cluster:
        client = RedisCluster.from_url(
            url, socket_timeout=io_timeout, socket_connect_timeout=io_timeout
        )
        await client.initialize()
        return client
    return Redis.from_url(url, socket_timeout=io_timeout, socket_connect_timeout=io_timeout)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description="Move every chat of a store written by the sorted-set version of "
        "pullchat to the stream layout. Safe to interrupt and to run again.",
    )
    parser.add_argument("--redis-url", help="the store (default: REDIS_URL, as the RPC service)")
    parser.add_argument(
        "--cluster",
        choices=("auto", "yes", "no"),
        help="Redis Cluster or not (default: REDIS_CLUSTER, auto)",
    )
    parser.add_argument(
        "--chunk", type=int, default=CHUNK, help=f"messages per script call ({CHUNK})"
    )
    parser.add_argument("--timeout", type=float, default=10.0, help="per Redis call (s), 10")
    parser.add_argument(
        "--check",
        action="store_true",
        help="only tell whether a migration is needed (exit 1 if so); change nothing",
    )
    return parser


async def _run(args: argparse.Namespace, url: str, cluster: str) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    redis = await connect(url, cluster, args.timeout)
    try:
        if args.check:
            needed = await needs_migration(redis)
            print("migration needed" if needed else "nothing to migrate", flush=True)
            return 1 if needed else 0
        started = reported = time.monotonic()

        def report(progress: Progress) -> None:
            nonlocal reported
            if time.monotonic() - reported >= 5:
                reported = time.monotonic()
                print(f"{progress.chats:,} chats, {progress.messages:,} messages", flush=True)

        try:
            progress = await migrate(redis, args.chunk, report, stop)
        except Interrupted:
            print(f"{PROGRAM}: interrupted; run it again to go on", file=sys.stderr, flush=True)
            return 130
        print(
            f"migrated {progress.chats:,} chats, {progress.messages:,} messages"
            f" in {time.monotonic() - started:.1f} s; the store holds streams only",
            flush=True,
        )
        return 0
    finally:
        await redis.aclose()


def main(argv: list[str] | None = None) -> None:
    from rpc_srv.settings import Settings

    args = _parser().parse_args(argv)
    if args.chunk < 1:
        _parser().error("--chunk must be at least 1")
    settings = or_exit(Settings.from_env, PROGRAM)
    url = args.redis_url or settings.redis_url
    cluster = args.cluster or settings.redis_cluster
    try:
        status = asyncio.run(_run(args, url, cluster))
    except (redis_errors.RedisError, RuntimeError) as exc:
        print(
            f"{PROGRAM}: {type(exc).__name__}: {exc}; nothing is lost, run it again to go on",
            file=sys.stderr,
            flush=True,
        )
        raise SystemExit(1) from None
    raise SystemExit(status)


if __name__ == "__main__":
    main()
