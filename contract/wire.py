"""The RPC wire contract, shaped after the assignment's idl_rpc.thrift.

Requests and replies are JSON objects with snake_case field names:

- ``POST /rpc/send``  ``{"message": {"chat", "text", "sender"}, "client_msg_id"?}``
  -> ``{"code", "msg", "chat", "sender", "send_time", "duplicate"}``
- ``POST /rpc/pull``  ``{"chat", "cursor", "limit", "reverse"?}``
  -> ``{"code", "msg", "messages", "has_more", "next_cursor", "tail_cursor"?}``
- ``POST /rpc/chats`` ``{"user", "limit"?, "cursor"?}``
  -> ``{"code", "msg", "chats", "has_more", "next_cursor", "latest_activity"}``:
  the public answer of ``GET /api/chats``, field for field
- ``POST /rpc/mark_read`` ``{"chat", "user", "send_time"}``
  -> ``{"code", "msg", "chat", "user", "read_cursor", "unread"}``
- ``POST /rpc/batch`` ``{"calls": [{"method": "send" | "pull" | "chats" | "mark_read",
  "request": {...}}]}``
  -> ``{"code", "msg", "replies": [...]}``: one reply per call, in order, each
  with its own code (the front end coalesces concurrent calls into these).
  Asked with ``Accept: application/x-ndjson``, a successful batch answers
  with the replies alone, one JSON object per line, in order (no JSON the
  service writes holds a raw newline), so a caller can pass each reply on
  without decoding it
- ``GET /rpc/stream``: a WebSocket carrying batches as frames, the same calls
  and replies as ``/rpc/batch`` without an HTTP exchange each
  (rpc_srv/stream.py says what its frames hold)
- ``GET /rpc/watch``: a WebSocket of new-message hints for waiting pulls
  (rpc_srv/watch.py says what its frames hold)
- ``GET /health`` -> ``{"code", "msg"}`` (code 0 when Redis answers)
- ``GET /metrics``: Prometheus text format

Every reply carries ``code`` (0 is success) and ``msg``, and its JSON begins
with ``code``: a successful reply begins with OK_REPLY_PREFIX, byte for byte.
A forward Pull reply (``reverse`` false) also carries ``tail_cursor``: the
send_time of its last message plus 1, or the request's cursor when it is
empty. A successful Send, Pull, Chats or MarkRead reply has exactly the fields of
its public answer, so the front end answers with its bytes as they are. The HTTP status is 200
whenever a ``code`` is given; the code tells what happened. The ``msg`` of an
INVALID_ARGUMENT reply names the field at fault first (``"limit: must be ..."``).

A request may carry ``X-Request-Id`` (see contract/request_ids.py); the reply
echoes it, or a new one when none or an unsafe one was given. Each call of a
batch may carry its own ``"request_id"`` beside ``method`` and ``request``, so
that log lines name the public request each call serves.
"""

from __future__ import annotations

from enum import IntEnum

SEND_PATH = "/rpc/send"
PULL_PATH = "/rpc/pull"
CHATS_PATH = "/rpc/chats"
MARK_READ_PATH = "/rpc/mark_read"
BATCH_PATH = "/rpc/batch"
WATCH_PATH = "/rpc/watch"
STREAM_PATH = "/rpc/stream"
HEALTH_PATH = "/health"
METRICS_PATH = "/metrics"
BATCH_MAX = 512
NDJSON = "application/x-ndjson"  # a batch's replies, one per line (see above)
OK_REPLY_PREFIX = b'{"code":0,'
# How a successful Pull reply with no message begins (its key order is fixed).
EMPTY_PAGE_PREFIX = b'{"code":0,"msg":"success","messages":[]'
WATCH_HEARTBEAT = 10.0  # seconds between pings on a watch stream: a dead peer is noticed
WATCH_FRAME_MAX = 4 * 1024 * 1024  # bytes in one frame of a watch stream
STREAM_DRAINING = "draining"  # a batch stream's notice that its worker drains
# Set on every reply of a worker that is shutting down: clients should move on.
DRAINING_HEADER = "X-Pullchat-Draining"

CHATS_LIMIT_DEFAULT = 20
CHATS_LIMIT_MAX = 100
PULL_LIMIT_DEFAULT = 10
PULL_LIMIT_MAX = 1000
TEXT_MAX_BYTES_DEFAULT = 64 * 1024  # TEXT_MAX_BYTES, read by both tiers
CURSOR_MAX = 2**63 - 1
CLIENT_MSG_ID_MAX_CHARS = 128


class Code(IntEnum):
    """Reply codes of the RPC service."""

    OK = 0
    INVALID_ARGUMENT = 1  # the request broke the contract; nothing was stored
    UNAVAILABLE = 2  # Redis could not be reached in time; a send may or may not be stored
    INTERNAL = 3  # an unexpected failure; details are in the service's log
