"""Stacks for the tests: launcher.stack.Stack on free loopback ports, one process per tier.

The fixtures `stack` and `make_stack` (conftest.py) hand them out; a
StackFactory stops every stack it started when its fixture ends.
"""

from __future__ import annotations

from pathlib import Path

from launcher.stack import Stack

# One process per tier unless a test asks for more: quicker to start and
# stop, and Sanic's worker manager holds SIGTERM until its workers have
# acknowledged their start, which a short test can beat.
ONE_PROCESS_PER_TIER = {"HTTP_WORKERS": "1", "RPC_WORKERS": "1"}


class StackFactory:
    """Starts stacks with logs under one folder; stop_all() stops each of them."""

    def __init__(self, log_root: Path) -> None:
        self.log_root = log_root
        self.started: list[Stack] = []

    def __call__(
        self,
        redis_url: str | None,
        *,
        start: bool = True,
        **overrides: str,
    ) -> Stack:
        """A stack on `redis_url`, or on a Redis of its own (data in its log folder) if None.

        The first stack logs to the factory's folder, each next one to a folder
        inside it. With `start` false nothing is started yet (add_rpc and
        add_http start its tiers one by one).
        """
        count = len(self.started)
        log_dir = self.log_root / f"stack-{count + 1}" if count else self.log_root
        log_dir.mkdir(parents=True, exist_ok=True)
        stack = Stack.on_loopback(
            redis_url,
            log_dir=log_dir,
            data_dir=log_dir / "redis" if redis_url is None else None,
            overrides={**ONE_PROCESS_PER_TIER, **overrides},
        )
        self.started.append(stack)
        return stack.start() if start else stack

    def stop_all(self) -> None:
        """Stop every stack started here, the last one first."""
        while self.started:
            self.started.pop().stop()
