"""The front end's logging set-up (Sanic's ``log_config``), as text or JSON.

Sanic's own loggers keep their usual destinations (errors to stderr, the
rest to stdout). Text keeps Sanic's production look; each line made for a
request ends with its id (contract.logconfig).
"""

from __future__ import annotations

from typing import Any

from sanic.logging.formatter import ProdAccessFormatter, ProdFormatter

from contract.logconfig import TextFormatter, base_config, formatter, handler

SANIC_LOGGERS = ("sanic.root", "sanic.server", "sanic.websockets")


class SanicText(TextFormatter, ProdFormatter):
    """Sanic's production line, with the request id."""


class SanicAccessText(TextFormatter, ProdAccessFormatter):
    """Sanic's production access line, with the request id."""


def log_config(log_format: str) -> dict[str, Any]:
    config = base_config(
        {
            "generic": formatter(log_format, {"()": SanicText}),
            "access": formatter(log_format, {"()": SanicAccessText}),
        },
        {
            "console": handler("ext://sys.stdout", "generic"),
            "error_console": handler("ext://sys.stderr", "generic"),
            "access_console": handler("ext://sys.stdout", "access"),
        },
    )
    loggers: dict[str, Any] = {
        name: {"level": "INFO", "handlers": ["console"], "propagate": False}
        for name in SANIC_LOGGERS
    }
    loggers["sanic.error"] = {"level": "INFO", "handlers": ["error_console"], "propagate": False}
    loggers["sanic.access"] = {"level": "INFO", "handlers": ["access_console"], "propagate": False}
    loggers["http_srv"] = {"level": "INFO", "handlers": ["error_console"], "propagate": False}
    config["loggers"] = loggers
    return config
