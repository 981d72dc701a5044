"""Stopping Sanic's worker manager on a signal at any moment, its start-up included.

Sanic's manager passes SIGTERM/SIGINT on to its workers at once. A worker
still importing or starting dies of it (a KeyboardInterrupt traceback)
without ever acknowledging its start, and the manager keeps waiting for that
acknowledgement (``WorkerManager.wait_for_ack``): the process holds until
whoever signalled it gives up and kills it. Its handler also talks to the
shared worker state from inside the signal handler, which can interrupt the
main thread in the middle of its own exchange with that state and wedge it.

So, in the manager process, the signal handler only notes the signal. A
watcher thread then waits until every worker serves (they start in about a
second; ``HOLD_MAX_SECONDS`` at most) and asks the manager to stop the way
its workers do, with a ``__TERMINATE__`` message on its monitor pipe, which
its main loop handles in its own time. The workers then stop as usual:
in-flight requests are finished within ``HTTP_GRACEFUL_TIMEOUT``. A second
signal goes straight to Sanic's handler, which kills (as Sanic does).
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Mapping
from multiprocessing.connection import Connection
from types import FrameType
from typing import Any, Protocol

from sanic.log import logger

HOLD_MAX_SECONDS = 20.0
POLL_SECONDS = 0.05
TERMINATE = "__TERMINATE__"  # what a worker's app.m.terminate() sends the manager
# Worker states that mean it will never serve (Sanic's ProcessState names).
ENDED = {"TERMINATED", "FAILED", "COMPLETED", "JOINED"}


class Manager(Protocol):
    num_server: int
    worker_state: Mapping[str, Any]
    monitor_publisher: Connection

    def shutdown_signal(self, signum: int, frame: FrameType | None) -> None: ...


def settled(manager: Manager) -> bool:
    """Whether each server worker serves (its own signal handlers are in place), or ended."""
    try:
        servers = [s for s in manager.worker_state.values() if s.get("server")]
    except (OSError, EOFError):
        return True  # the state's keeper is gone: the manager is stopping anyway
    if len(servers) < manager.num_server:
        return False
    return all(s.get("serving") or s.get("state") in ENDED for s in servers)


class StopHold:
    """The manager's SIGTERM/SIGINT handling while it runs (see the module doc)."""

    def __init__(self, manager: Manager) -> None:
        self.manager = manager
        self.requested: int | None = None

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self.on_signal)
        threading.Thread(target=self._watch, name="stop-watch", daemon=True).start()

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        # Only a flag: this may run in the middle of the main thread's own work.
        if self.requested is None:
            self.requested = signum
            return
        self.manager.shutdown_signal(signum, frame)

    def _watch(self) -> None:
        while self.requested is None:
            time.sleep(POLL_SECONDS)
        deadline = time.monotonic() + HOLD_MAX_SECONDS
        while not settled(self.manager) and time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)
        logger.info("Received signal %s. Shutting down.", signal.Signals(self.requested).name)
        self.manager.monitor_publisher.send(TERMINATE)


_EARLY: list[int] = []


def _early(signum: int, _frame: FrameType | None) -> None:
    _EARLY.append(signum)


def catch_early_stop() -> None:
    """Until the manager exists, a stop signal is only noted (and held once it does)."""
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, _early)


def hold_stop_during_startup(app: Any, _loop: Any) -> None:
    """``main_process_ready`` listener: the manager exists, its workers are not started."""
    hold = StopHold(app.manager)
    hold.install()
    if _EARLY:
        hold.requested = _EARLY[0]
