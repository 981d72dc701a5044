"""The RPC service's aiohttp middlewares: the request id of each request."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from contract.request_ids import HEADER, accept_or_new, using

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
