"""Prometheus metrics of the front end."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Coroutine
from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from sanic import HTTPResponse, Request

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

REQUESTS = Counter(
    "pullchat_http_requests_total", "Public HTTP requests by route and status", ["route", "status"]
)
REQUEST_SECONDS = Histogram(
    "pullchat_http_request_seconds", "Time to answer one public HTTP request", ["route"],
    buckets=LATENCY_BUCKETS,
)  # fmt: skip
RPC_ERRORS = Counter(
    "pullchat_rpc_client_errors_total", "RPC calls that failed, by HTTP status given", ["status"]
)
RPC_RETRIES = Counter(
    "pullchat_rpc_client_retries_total", "RPC requests sent again, by reason", ["reason"]
)
RPC_BATCH_CALLS = Histogram(
    "pullchat_rpc_client_batch_calls", "Calls coalesced into one RPC request",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
)  # fmt: skip
WAITING_PULLS = Gauge(
    "pullchat_http_waiting_pulls", "Pulls parked until a message arrives (wait)",
    multiprocess_mode="livesum",
)  # fmt: skip
WAKE_READS = Counter(
    "pullchat_http_wake_reads_total", "Pages read again for parked pulls (one per group)"
)
WATCH_STREAM_OPEN = Gauge(
    "pullchat_http_watch_streams", "Watch streams to the RPC service open (one per worker)",
    multiprocess_mode="livesum",
)  # fmt: skip
RPC_REPLICAS = Gauge(
    "pullchat_rpc_client_replicas", "RPC replicas the client knows of", multiprocess_mode="max"
)


Handler = Callable[[Request], Coroutine[Any, Any, HTTPResponse]]


def timed(name: str, handler: Handler) -> Handler:
    """`handler`, counted and timed under the route label `name` when it answers.

    Cheaper than Sanic middleware; answers given by the error handler are
    counted there (see count_error).
    """
    seconds = REQUEST_SECONDS.labels(name)
    ok = REQUESTS.labels(name, "200")

    @functools.wraps(handler)
    async def route(request: Request) -> HTTPResponse:
        started = request.ctx.started = time.perf_counter()
        response = await handler(request)
        seconds.observe(time.perf_counter() - started)
        (ok if response.status == 200 else REQUESTS.labels(name, str(response.status))).inc()
        return response

    return route


def count_error(request: Request, status: int) -> None:
    """Count an error answer; timed too if its route had started timing it."""
    route = request.route.name.rpartition(".")[2] if request.route is not None else "unmatched"
    started = getattr(request.ctx, "started", None)
    if started is not None:
        REQUEST_SECONDS.labels(route).observe(time.perf_counter() - started)
    REQUESTS.labels(route, str(status)).inc()
