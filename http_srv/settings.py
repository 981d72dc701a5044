"""Settings of the HTTP front end; each is an environment variable with a default."""

from __future__ import annotations

from dataclasses import dataclass

from contract.envvars import check_choice, from_env, setting
from contract.logconfig import LOG_FORMATS
from contract.wire import TEXT_MAX_BYTES_DEFAULT


@dataclass(frozen=True)
class Settings:
    host: str = setting("HTTP_HOST", "0.0.0.0", doc="the public door")
    port: int = setting("HTTP_PORT", 8080)
    workers: int = setting(
        "HTTP_WORKERS", 2, minimum=1, doc="Sanic worker processes (2 measured best on 2 cores)"
    )
    backlog: int = setting(
        "HTTP_BACKLOG", 4096, minimum=1, doc="connections queued for accept (capped by somaxconn)"
    )
    rpc_url: str = setting(
        "RPC_URL", "http://127.0.0.1:8888", doc="the RPC service: one or more URLs, comma-separated"
    )
    rpc_resolve_interval: float = setting(
        "RPC_RESOLVE_INTERVAL", 5.0, minimum=0.1, doc="how often RPC host names are resolved (s)"
    )
    rpc_timeout: float = setting(
        "RPC_TIMEOUT", 2.0, minimum=0.01, doc="bound on one RPC, retry included (s)"
    )
    rpc_pool_size: int = setting("RPC_POOL_SIZE", 128, minimum=1, doc="connections per worker")
    rpc_keepalive: float = setting(
        "RPC_CLIENT_KEEPALIVE", 30.0, minimum=1, doc="below RPC_KEEPALIVE, so pooled sockets live"
    )
    rpc_batch: bool = setting(
        "RPC_BATCH", True, doc="coalesce the RPC calls of one event-loop tick into one request"
    )
    rpc_stream: bool = setting(
        "RPC_STREAM", True, doc="batches as frames of one WebSocket per RPC replica (/rpc/stream)"
    )
    rpc_batch_max: int = setting("RPC_BATCH_MAX", 128, minimum=1, doc="calls per batch at most")
    pull_wait_max: int = setting(
        "PULL_WAIT_MAX", 30, minimum=0, doc="a pull's wait above this many seconds waits this long"
    )
    request_max_bytes: int = setting("REQUEST_MAX_BYTES", 1024 * 1024, minimum=1024)
    request_max_header_bytes: int = setting(
        "REQUEST_MAX_HEADER_BYTES", 8192, minimum=1024, doc="request line and headers; 431 over"
    )
    request_max_line_bytes: int = setting(
        "REQUEST_MAX_LINE_BYTES", 8192, minimum=256, doc="request line (method, URL); 414 over"
    )
    text_max_bytes: int = setting("TEXT_MAX_BYTES", TEXT_MAX_BYTES_DEFAULT)
    request_timeout: float = setting(
        "REQUEST_TIMEOUT", 10.0, minimum=0.1, doc="a request must arrive within (s)"
    )
    keepalive_timeout: float = setting("KEEPALIVE_TIMEOUT", 75.0, minimum=1)
    graceful_timeout: float = setting("HTTP_GRACEFUL_TIMEOUT", 10.0, doc="drain on SIGTERM (s)")
    access_log: bool = setting("HTTP_ACCESS_LOG", False)
    metrics: bool = setting("HTTP_METRICS", True, doc="serve Prometheus metrics at /metrics")
    log_format: str = setting("LOG_FORMAT", "text", doc="text, or json: one object per line")

    def __post_init__(self) -> None:
        check_choice("LOG_FORMAT", self.log_format, LOG_FORMATS)

    @classmethod
    def from_env(cls) -> Settings:
        return from_env(cls)
