"""Coalesce the Redis calls of one event-loop tick into one Redis pipeline.

Every call made in the same tick adds its command here (at once, so a batch's
calls need no task each): an EVALSHA of one of the store's scripts, or a plain
command that is atomic on its own (a pull's XRANGE). At the end of the tick
they go to Redis together, one write and one read for all of them, instead of
a round trip (and a pool checkout) each. (On a Redis Cluster they go
concurrently, each to its node, since redis-py does not pipeline scripts
there.) Each caller still gets its own reply or its own error. Each command
stays atomic on its own, so the order and uniqueness guarantees of the
scripts hold.

Replies of a single server's pipeline are read raw (no redis-py response
callbacks); on a Cluster, redis-py parses them as it does for any command.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any

from hiredis import pack_command
from redis import exceptions as redis_errors
from redis.asyncio import Connection, Redis, RedisCluster
from redis.commands.core import AsyncScript

from contract.coalescer import TickCoalescer
from rpc_srv import metrics

# Errors after which Redis may be fine again soon (the store answers "unavailable").
TRANSIENT = (redis_errors.ConnectionError, redis_errors.TimeoutError)


@dataclass(slots=True)
class _Call:
    script: AsyncScript | None  # None: `args` is a whole command of its own
    keys: Sequence[str]
    args: Sequence[Any]
    retry_safe: bool  # may run twice without harm (a read, or a keyed send)
    future: asyncio.Future[Any]

    def command(self) -> tuple[Any, ...]:
        if self.script is None:
            return tuple(self.args)
        # The sha is read when sent: it is set again after a NOSCRIPT reload.
        return ("EVALSHA", self.script.sha, len(self.keys), *self.keys, *self.args)


class Pipeliner:
    """Runs script calls and plain commands in per-tick pipelines."""

    def __init__(
        self, redis: Redis | RedisCluster, max_batch: int = 512, max_in_flight: int = 64
    ) -> None:
        self.redis = redis
        self._cluster = isinstance(redis, RedisCluster)
        # A cluster node's pool fails at once when full: keep within it.
        self._in_flight = asyncio.Semaphore(max_in_flight)
        self._calls = TickCoalescer(self._run, max_batch)

    def submit(
        self, script: AsyncScript, keys: Sequence[str], args: Sequence[Any], retry_safe: bool
    ) -> asyncio.Future[Any]:
        """Queue a script call for this tick's pipeline, now.

        The future gets the script's reply, or the RedisError it raised
        (transient ones after a retry). A caller that gives up only drops its
        future: the pipeline still reads every reply, so no connection is left
        holding an unread one.
        """
        return self._queue(script, keys, args, retry_safe)

    def submit_command(
        self, command: Sequence[Any], key: str, retry_safe: bool
    ) -> asyncio.Future[Any]:
        """Queue a plain command on `key` (e.g. ``XRANGE key ...``), as `submit` does a script."""
        return self._queue(None, (key,), command, retry_safe)

    def _queue(
        self,
        script: AsyncScript | None,
        keys: Sequence[str],
        args: Sequence[Any],
        retry_safe: bool,
    ) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._calls.add(_Call(script, keys, args, retry_safe, future))
        return future

    async def wait_idle(self) -> None:
        """Wait until every call sent so far is settled (before closing the client)."""
        await self._calls.wait_idle()

    async def _run(self, calls: list[_Call], retried: bool = False) -> None:
        """Run calls and settle every future, whatever happens."""
        try:
            replies = await self._execute(calls)
        except Exception as exc:  # the whole round trip failed
            replies = [exc] * len(calls)
        again, missing, moving = [], [], []
        for c, reply in zip(calls, replies, strict=True):
            if isinstance(reply, redis_errors.NoScriptError) and not retried:
                missing.append(c)  # never ran: safe to run again once loaded
            elif isinstance(reply, redis_errors.ClusterError) and not retried:
                # Redirections ran out while a slot was moving: it never ran.
                moving.append(c)
            elif isinstance(reply, TRANSIENT) and c.retry_safe and not retried:
                # A broken connection may be a stale one from before a Redis
                # restart: what may run twice gets one more try on a fresh one.
                again.append(c)
            elif isinstance(reply, BaseException):
                _fail(c, reply)
            elif not c.future.done():
                c.future.set_result(reply)
        if missing:
            missing = await self._load_scripts(missing)
        if moving:
            await asyncio.sleep(0.05)  # let the slot's migration move on
        if again or missing or moving:
            await self._run(again + missing + moving, retried=True)

    async def _load_scripts(self, missing: list[_Call]) -> list[_Call]:
        """Load the scripts these calls missed; the calls that may now run again.

        On a Cluster each script is loaded on every master, one load per
        master at once (the node that runs a call may be another than its
        slot's owner while the slot moves), and the calls run again unless
        every load failed: a master that cannot be reached fails the calls
        bound for it, not those for the others.
        """
        scripts = [c.script for c in {id(c.script): c for c in missing}.values()]
        loads: list[Awaitable[Any]] = []
        for script in scripts:
            assert script is not None  # only a script gets NOSCRIPT
            if isinstance(self.redis, RedisCluster):
                loads += [
                    self.redis.execute_command("SCRIPT LOAD", script.script, target_nodes=node)
                    for node in self.redis.get_primaries()
                ]
            else:
                loads.append(self.redis.script_load(script.script))
        outcomes = await asyncio.gather(*loads, return_exceptions=True)
        failures = [o for o in outcomes if isinstance(o, BaseException)]
        if failures and len(failures) == len(outcomes):
            for c in missing:
                _fail(c, failures[0])
            return []
        return missing

    async def _execute(self, calls: list[_Call]) -> list[Any]:
        started = time.perf_counter()
        try:
            replies = await self._roundtrip(calls)
        except redis_errors.RedisError as exc:
            metrics.REDIS_ERRORS.labels(type(exc).__name__).inc()
            raise
        metrics.REDIS_SECONDS.observe(time.perf_counter() - started)
        metrics.REDIS_COMMANDS.observe(len(calls))
        return replies

    async def _roundtrip(self, calls: list[_Call]) -> list[Any]:
        """One reply or exception per call, or an exception for the whole trip."""
        if self._cluster:
            # redis-py's cluster pipelines refuse EVALSHA: in a cluster the calls
            # go concurrently instead, each to its own node.
            return await asyncio.gather(*(self._one(c) for c in calls), return_exceptions=True)
        return await self._pipeline(calls)

    async def _pipeline(self, calls: list[_Call]) -> list[Any]:
        """One write and one bounded read on one pooled connection.

        This is redis-py's pipeline minus what these calls do not need (per
        command packing in Python, a timer per reply, response callbacks):
        hiredis packs the commands, and one deadline of the connection's
        socket timeout covers all the replies. A connection that fails or
        times out part way is closed (by redis-py, or here), so no reply is
        left unread on a pooled connection.
        """
        assert isinstance(self.redis, Redis)
        pool = self.redis.connection_pool
        conn = await pool.get_connection()  # type: ignore[no-untyped-call]
        replies: list[Any] = []
        try:
            packed = b"".join(pack_command(c.command()) for c in calls)
            await conn.send_packed_command(packed, check_health=False)
            async with asyncio.timeout(conn.socket_timeout):
                for _ in calls:
                    replies.append(await _read_reply(conn))
            return replies
        except TimeoutError:
            failure: redis_errors.RedisError = redis_errors.TimeoutError(
                "Redis did not answer in time"
            )
        except TRANSIENT as exc:
            failure = exc
        finally:
            await pool.release(conn)
        if isinstance(failure, redis_errors.ConnectionError):
            # The server went away (a restart, a failover): the idle pooled
            # connections were made to it too, so close them now rather than
            # fail a call on each of them later, whenever it is next used.
            await pool.disconnect(inuse_connections=False)
        if not replies:
            raise failure
        # Broken part way (the connection is closed): the replies already read
        # stand, and only the calls still waiting fail.
        metrics.REDIS_ERRORS.labels(type(failure).__name__).inc()
        return replies + [failure] * (len(calls) - len(replies))

    async def _one(self, c: _Call) -> Any:
        async with self._in_flight:
            return await self.redis.execute_command(*c.command())


async def _read_reply(conn: Connection) -> Any:
    """The next reply on `conn`: a script's result or its own error reply."""
    try:
        # No timer per reply (math.inf): the round trip's deadline bounds them.
        reply = await conn.read_response(timeout=math.inf)
    except redis_errors.ResponseError as exc:
        return exc  # that call's own error; the others are read on
    if reply is None:
        # redis-py's answer to a socket-level timeout when given a timeout; the
        # scripts and commands sent here always reply with an array, so the
        # connection is broken.
        await conn.disconnect(nowait=True)
        raise redis_errors.ConnectionError("connection lost while reading replies")
    return reply


def _fail(call: _Call, exc: BaseException) -> None:
    if not call.future.done():
        call.future.set_exception(exc)
