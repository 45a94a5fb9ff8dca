"""The framework's ceiling: a bare Starlette app that answers the benchmark's requests with no work behind them.

`GET /api/comments` returns a fixed JSON document (the size of a real 30-comment thread: the
file named by BENCH_CEILING_DOCUMENT, else a generated one) with an ETag, and `304` for a
matching If-None-Match; `POST /api/comments` reads and parses a JSON body and answers `202`
with a small JSON document. Served by the same server, with the same worker count and
options, as `comments serve`:

    uvicorn ceiling:create_app --factory --app-dir bench --workers 2
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


def _document() -> bytes:
    path = os.environ.get("BENCH_CEILING_DOCUMENT")
    if path:
        return Path(path).read_bytes()
    comment = {"id": 1, "parent": None, "author": "Ann", "url": None,
               "body_html": "<p>" + "A thoughtful comment. " * 18 + "</p>",
               "created_at": "2026-11-29T18:37:04Z", "replies": []}
    return orjson.dumps({"page": "/p/1", "total": 30, "comments": [comment] * 30, "next": None})


def create_app() -> Starlette:
    """The ceiling app; the document is read once, when the worker starts."""
    document = _document()
    etag = '"' + hashlib.sha256(document).hexdigest()[:32] + '"'
    headers = {"ETag": etag, "Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}

    async def thread(request: Request) -> Response:
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers=headers)
        return Response(document, media_type="application/json", headers=headers)

    async def create(request: Request) -> Response:
        data = orjson.loads(await request.body())
        answer = {"id": 1, "parent": None, "author": data.get("author"), "url": data.get("url"),
                  "body_html": data.get("body"), "created_at": "2026-11-29T18:37:04Z",
                  "status": "pending", "edit_token": "x" * 43}
        return Response(orjson.dumps(answer), status_code=202, media_type="application/json",
                        headers={"Cache-Control": "no-store"})

    async def healthz(_request: Request) -> Response:
        return Response(b'{"status": "ok"}', media_type="application/json")

    return Starlette(routes=[
        Route("/api/comments", thread, methods=["GET"]),
        Route("/api/comments", create, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
    ])
