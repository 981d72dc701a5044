"""Settings of the RPC service; each is an environment variable with a default."""

from __future__ import annotations

from dataclasses import dataclass

from contract.envvars import check_choice, from_env, setting
from contract.logconfig import LOG_FORMATS
from contract.wire import TEXT_MAX_BYTES_DEFAULT


@dataclass(frozen=True)
class Settings:
    host: str = setting("RPC_HOST", "127.0.0.1", doc="internal service: loopback by default")
    port: int = setting("RPC_PORT", 8888)
    workers: int = setting(
        "RPC_WORKERS", 1, minimum=1, doc="gunicorn worker processes (1 measured best on 2 cores)"
    )
    redis_url: str = setting("REDIS_URL", "redis://127.0.0.1:6379/0")
    redis_cluster: str = setting(
        "REDIS_CLUSTER", "auto", doc="auto (ask Redis at start), yes or no"
    )
    redis_pool_size: int = setting("REDIS_POOL_SIZE", 64, minimum=1, doc="per worker")
    redis_timeout: float = setting(
        "REDIS_TIMEOUT", 0.8, minimum=0.01, doc="connect, each round trip, and pool wait (s)"
    )
    idempotency_ttl: int = setting(
        "IDEMPOTENCY_TTL", 86400, minimum=1, doc="seconds an idempotency key is remembered"
    )
    retention_days: int = setting(
        "RETENTION_DAYS",
        0,
        minimum=0,
        doc="messages older than this many days are trimmed and never returned; 0 keeps all",
    )
    text_max_bytes: int = setting("TEXT_MAX_BYTES", TEXT_MAX_BYTES_DEFAULT)
    request_max_bytes: int = setting("RPC_REQUEST_MAX_BYTES", 1024 * 1024 + 4096, minimum=1024)
    keepalive: int = setting(
        "RPC_KEEPALIVE", 75, minimum=1, doc="idle keep-alive (s); above the client's"
    )
    drain_seconds: float = setting(
        "RPC_DRAIN_SECONDS", 1.0, doc="on SIGTERM, keep answering this long, telling clients to go"
    )
    graceful_timeout: int = setting(
        "RPC_GRACEFUL_TIMEOUT", 10, doc="then finish in-flight requests within (s)"
    )
    log_format: str = setting("LOG_FORMAT", "text", doc="text, or json: one object per line")

    def __post_init__(self) -> None:
        check_choice("REDIS_CLUSTER", self.redis_cluster, ("auto", "yes", "no"))
        check_choice("LOG_FORMAT", self.log_format, LOG_FORMATS)

    @classmethod
    def from_env(cls) -> Settings:
        return from_env(cls)
