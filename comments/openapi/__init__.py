"""The HTTP contract as an OpenAPI 3.1 document, served at /openapi.json for the routes this app has."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ..http import json_response, route
from .components import ERROR_ANSWERS, SCHEMAS, SECURITY_SCHEMES
from .paths import PATHS, operation_id, with_ids

__all__ = ["document", "operation_id", "routes", "serve"]


def document(paths: set[str] | None = None) -> dict[str, Any]:
    """The OpenAPI document; with paths, only the operations of those routes."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "comments", "version": "1",
                 "description": "Leave a Reply form, public threads and the moderation API. "
                                "A HEAD request works wherever a GET does."},
        "paths": with_ids({path: item for path, item in PATHS.items() if paths is None or path in paths}),
        "components": {
            "schemas": SCHEMAS,
            "responses": ERROR_ANSWERS,
            "securitySchemes": SECURITY_SCHEMES,
        },
    }


async def serve(request: Request) -> Response:
    """The document for the routes mounted on this app, never cached without asking again."""
    mounted = {getattr(r, "path_format", "") for r in request.app.routes}
    return json_response(document(mounted), headers={"Cache-Control": "no-cache"})


def routes() -> list[Route]:
    """The route that serves the document."""
    return [route("/openapi.json", GET=serve)]
