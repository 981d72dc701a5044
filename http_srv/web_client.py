"""The chat page at ``/``: a small client of the public API, served from http_srv/web.

The page and its script and style are files of the package (no build step,
nothing from elsewhere). The page answers with a strict Content-Security-Policy:
scripts, styles and API calls from this origin only, no inline script or
style. Its files are served by Sanic's static handler under ``/web/`` (which
keeps every path inside the folder and answers ``If-Modified-Since``), with
``Cache-Control: no-cache`` so a browser always revalidates them.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from sanic import Blueprint, HTTPResponse, Request

from http_srv.handlers import read_body

WEB_DIR = Path(str(files("http_srv").joinpath("web")))
_PAGE = (WEB_DIR / "index.html").read_bytes()
WEB_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
_HEADERS = {
    "Cache-Control": "no-cache",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}

web = Blueprint("web")


async def page(request: Request) -> HTTPResponse:
    await read_body(request)
    return HTTPResponse(
        _PAGE,
        content_type="text/html; charset=utf-8",
        headers={**_HEADERS, "Content-Security-Policy": WEB_CSP},
    )


web.add_route(page, "/", methods=["GET"], name="page", stream=True)
web.static("/web", WEB_DIR, name="assets")


async def asset_headers(request: Request, response: HTTPResponse) -> None:
    """The blueprint's answers (the page and its files) say how to cache and sniff them."""
    for name, value in _HEADERS.items():
        response.headers.setdefault(name, value)


web.middleware(asset_headers, attach_to="response")
