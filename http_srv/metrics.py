"""Prometheus metrics of the front end."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

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
RPC_REPLICAS = Gauge(
    "pullchat_rpc_client_replicas", "RPC replicas the client knows of", multiprocess_mode="max"
)
