"""Prometheus metrics of the RPC service."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)

REQUESTS = Counter(
    "pullchat_rpc_requests_total", "HTTP requests to the RPC service", ["path", "status"]
)
REQUEST_SECONDS = Histogram(
    "pullchat_rpc_request_seconds", "Time to answer one RPC HTTP request", ["path"],
    buckets=LATENCY_BUCKETS,
)  # fmt: skip
CALLS = Counter("pullchat_rpc_calls_total", "Calls by method and reply code", ["method", "code"])
BATCH_CALLS = Histogram(
    "pullchat_rpc_batch_calls", "Calls in one /rpc/batch request", buckets=SIZE_BUCKETS
)
REDIS_SECONDS = Histogram(
    "pullchat_redis_roundtrip_seconds", "Time of one Redis round trip (a pipeline or a call)",
    buckets=LATENCY_BUCKETS,
)  # fmt: skip
REDIS_COMMANDS = Histogram(
    "pullchat_redis_pipeline_commands", "Script calls sent in one Redis round trip",
    buckets=SIZE_BUCKETS,
)  # fmt: skip
REDIS_ERRORS = Counter("pullchat_redis_errors_total", "Failed Redis round trips", ["kind"])
BATCH_STREAMS = Gauge(
    "pullchat_rpc_batch_streams", "Batch streams open (one per front-end worker)",
    multiprocess_mode="livesum",
)  # fmt: skip
WATCH_STREAMS = Gauge(
    "pullchat_rpc_watch_streams", "Watch streams open (one per front-end worker)",
    multiprocess_mode="livesum",
)  # fmt: skip
WATCHED_CHATS = Gauge(
    "pullchat_rpc_watched_chats", "Chats whose new messages are subscribed to",
    multiprocess_mode="livesum",
)  # fmt: skip
NOTIFICATIONS = Counter(
    "pullchat_rpc_notifications_total", "New-message announcements received from Redis"
)
