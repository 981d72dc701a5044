"""The API's documentation: the OpenAPI document, and Swagger UI at /docs.

Our page and its initializer are served from http_srv/docs; the UI bundle's
own files under /docs/ui/ (swagger_ui_bundle).
"""

from __future__ import annotations

from importlib.resources import files

from sanic import HTTPResponse, Request

from http_srv.handlers import read_body

DOCS_DIR = files("http_srv").joinpath("docs")
OPENAPI_DOCUMENT = files("http_srv").joinpath("openapi.json").read_bytes()
_PAGE = DOCS_DIR.joinpath("index.html").read_bytes()
_INIT = DOCS_DIR.joinpath("init.js").read_bytes()
# The UI's own scripts and styles only, from this origin; it fetches the document here.
DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; base-uri 'none'; frame-ancestors 'none'"
)


async def openapi(request: Request) -> HTTPResponse:
    await read_body(request)
    return HTTPResponse(OPENAPI_DOCUMENT, content_type="application/json")


async def page(request: Request) -> HTTPResponse:
    await read_body(request)
    return HTTPResponse(
        _PAGE,
        content_type="text/html; charset=utf-8",
        headers={"Content-Security-Policy": DOCS_CSP, "Cache-Control": "no-cache"},
    )


async def init_script(request: Request) -> HTTPResponse:
    await read_body(request)
    return HTTPResponse(
        _INIT,
        content_type="text/javascript; charset=utf-8",
        headers={"Cache-Control": "no-cache"},
    )
