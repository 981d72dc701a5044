"""The RPC service's aiohttp middlewares: the request id, and failures as JSON replies."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from contract.request_ids import HEADER, accept_or_new, using
from contract.wire import DRAINING_HEADER, Code
from rpc_srv import metrics
from rpc_srv.calls import Reply, error_body
from rpc_srv.handlers import reply
from rpc_srv.state import LIFECYCLE

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """The RPC service's half: the caller's id (or a new one) for the request's log lines.

    The reply carries the id back in ``X-Request-Id``. A batch's calls each
    carry their own (see ``batch_call_id`` and ``awaited_as``).
    """
    request_id = accept_or_new(request.headers.get(HEADER))
    with using(request_id):
        response = await handler(request)
    response.headers[HEADER] = request_id
    return response


_SERIES: dict[tuple[str, int], tuple[Any, Any]] = {}


def _metrics_of(path: str, status: int) -> tuple[Any, Any]:
    """The timer and counter of a path and status, looked up once (labels() is not free)."""
    series = _SERIES.get((path, status))
    if series is None:
        if len(_SERIES) > 1000:  # unmatched paths are one label; statuses are few
            _SERIES.clear()
        series = _SERIES[path, status] = (
            metrics.REQUEST_SECONDS.labels(path),
            metrics.REQUESTS.labels(path, str(status)),
        )
    return series


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map every failure to the JSON reply shape, time and count every request.

    A worker that is draining marks each reply and closes its connection, so
    that its clients move to another replica.
    """
    started = time.perf_counter()
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        body: Reply = {"code": Code.INVALID_ARGUMENT, "msg": exc.reason}
        response = reply(body, exc.status)
    except Exception as exc:
        body = error_body(exc, request.app.logger)
        response = reply(body, 500 if body["code"] == Code.INTERNAL else 200)
    resource = request.match_info.route.resource
    path = resource.canonical if resource is not None else "unmatched"
    seconds, counted = _metrics_of(path, response.status)
    seconds.observe(time.perf_counter() - started)
    counted.inc()
    if request.app[LIFECYCLE].draining:
        response.headers[DRAINING_HEADER] = "1"
        response.force_close()
    return response
