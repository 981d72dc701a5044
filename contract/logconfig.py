"""Log line formats of both tiers and the run command: ``LOG_FORMAT`` text or json.

Text keeps each server's usual look and adds ``[request_id=...]`` to the lines
made for a request. JSON gives one object per line (``time``, ``level``,
``logger``, ``pid``, ``message``, ``request_id`` when there is one, ``exc``
with the traceback, and the access log's fields), for a log collector.
Both are plain ``logging`` formatters, installed with ``dictConfig``.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import orjson

LOG_FORMATS = ("text", "json")
FILTER = "contract.request_ids.RequestIdFilter"
# Fields that the front end's access log lines carry (see Sanic's Http.log_response).
ACCESS_FIELDS = ("status", "byte", "host", "request", "duration")


def with_request_id(line: str, record: logging.LogRecord) -> str:
    request_id = getattr(record, "request_id", None)
    return f"{line} [request_id={request_id}]" if request_id else line


class TextFormatter(logging.Formatter):
    """A ``logging.Formatter`` that names the request a line was made for."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return with_request_id(super().formatMessage(record), record)


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (tracebacks included, escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        request_id = getattr(record, "request_id", None)
        if request_id:
            line["request_id"] = request_id
        for name in ACCESS_FIELDS:
            value = getattr(record, name, None)
            if value not in (None, ""):
                line[name] = value.strip() if isinstance(value, str) else value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return orjson.dumps(line, default=str).decode()


def formatter(log_format: str, text: dict[str, Any]) -> dict[str, Any]:
    """The dictConfig entry of a formatter: `text` for text, else JSON."""
    return text if log_format == "text" else {"()": JsonFormatter}


def handler(stream: str, fmt: str, **extra: Any) -> dict[str, Any]:
    """A dictConfig stream handler (`stream` is ``ext://sys.stdout`` or stderr)."""
    return {
        "class": "logging.StreamHandler",
        "stream": stream,
        "formatter": fmt,
        "filters": ["request_id"],
        **extra,
    }


def base_config(formatters: dict[str, Any], handlers: dict[str, Any]) -> dict[str, Any]:
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": FILTER}},
        "formatters": formatters,
        "handlers": handlers,
    }
