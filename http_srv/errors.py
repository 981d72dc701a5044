"""The one place where failures become the public JSON error shape.

Every error answer is ``{"code": <int>, "msg": "<words>"}``; ``code`` is the
HTTP status of the answer, so it is never 0.
"""

from __future__ import annotations

from typing import Any

import orjson
from sanic import HTTPResponse, Request
from sanic.exceptions import SanicException
from sanic.handlers import ErrorHandler
from sanic.log import error_logger

from http_srv import metrics


class ApiError(SanicException):
    """A request the API answers with a 4xx or 5xx and the reason in words."""

    def __init__(self, status: int, msg: str) -> None:
        super().__init__(msg, status_code=status, quiet=True)
        self.msg = msg


def bad_field(name: str, problem: str) -> ApiError:
    """A 400 naming the field at fault."""
    return ApiError(400, f"{name}: {problem}")


def error_response(status: int, msg: str, headers: Any = None) -> HTTPResponse:
    return HTTPResponse(
        orjson.dumps({"code": status, "msg": msg}),
        status=status,
        headers=headers,
        content_type="application/json",
    )


class JsonErrorHandler(ErrorHandler):
    """Answers every error, Sanic's own (404, 405, 408, 413, ...) included, as JSON."""

    def default(self, request: Request, exception: Exception) -> HTTPResponse:
        if isinstance(exception, SanicException):
            status = exception.status_code
            msg = getattr(exception, "msg", None) or str(exception) or "error"
            response = error_response(status, msg, getattr(exception, "headers", None))
        else:
            error_logger.exception("unexpected failure", exc_info=exception)
            response = error_response(500, "internal error")
        if getattr(request.app.ctx, "settings", None) is None or request.app.ctx.settings.metrics:
            metrics.count_error(request, response.status)
        return response
