"""The reader's side: the embed script and stylesheet, the plain no-JavaScript form and the demo article."""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jinja2
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import BaseRoute, Route

from .errors import error_response
from .settings import Settings

HERE = Path(__file__).parent

# For the HTML this module serves; the embed itself needs no more than this on the embedding page.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
HTML_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "strict-origin-when-cross-origin",
    "Cache-Control": "no-store",  # the form may carry a fresh form token
}
STATIC = {
    "embed.js": "text/javascript; charset=utf-8",
    "embed.css": "text/css; charset=utf-8",
    "demo.css": "text/css; charset=utf-8",
}
MAX_PAGE = 1024


@dataclass(frozen=True)
class Asset:
    """One static file, read once, kept plain and gzipped, with a validator for each."""

    media_type: str
    plain: bytes
    gzipped: bytes
    etag: str

    @classmethod
    def read(cls, name: str, media_type: str) -> Asset:
        body = (HERE / "static" / name).read_bytes()
        digest = hashlib.sha256(body).hexdigest()[:20]
        return cls(media_type, body, gzip.compress(body, 9, mtime=0), digest)

    def response(self, request: Request) -> Response:
        """The file, gzipped when the client takes it; 304 when the client's copy is current."""
        zipped = "gzip" in request.headers.get("accept-encoding", "").lower()
        etag = f'"{self.etag}-gz"' if zipped else f'"{self.etag}"'
        headers = {
            "Cache-Control": "public, max-age=3600",
            "ETag": etag,
            "Vary": "Accept-Encoding",
            "X-Content-Type-Options": "nosniff",
            "Access-Control-Allow-Origin": "*",  # lets a site load it with crossorigin and SRI
            "Cross-Origin-Resource-Policy": "cross-origin",
        }
        if etag in request.headers.get("if-none-match", ""):
            return Response(status_code=304, headers=headers)
        if zipped:
            headers["Content-Encoding"] = "gzip"
        return Response(self.gzipped if zipped else self.plain, media_type=self.media_type,
                        headers=headers)


def _static(asset: Asset) -> Callable[[Request], Awaitable[Response]]:
    async def serve(request: Request) -> Response:
        return asset.response(request)

    return serve


def _http_url(value: str | None) -> str:
    """value if it is an absolute http(s) URL, else the empty string."""
    if not value or len(value) > 2048:
        return ""
    try:
        parts = urlsplit(value)
    except ValueError:
        return ""
    return value if parts.scheme in ("http", "https") and parts.netloc else ""


def _base(request: Request, settings: Settings) -> str:
    """The service's public root URL, ending in a slash."""
    public = getattr(settings, "public_url", None)
    return (str(public).rstrip("/") + "/") if public else str(request.base_url)


def _form_token(request: Request, page: str) -> str | None:
    """The signed form token for page, when the service makes them (Service.form_token), else None."""
    make = getattr(getattr(request.app.state, "service", None), "form_token", None)
    return str(make(page)) if callable(make) else None


def _form_context(
    request: Request, settings: Settings, page: str, redirect: str, parent: int
) -> dict[str, Any]:
    return {
        "action": _base(request, settings) + "api/comments",
        "page": page,
        "parent": parent,
        "redirect": redirect,
        "form_token": _form_token(request, page),
        "max_chars": settings.max_body_chars,
    }


def routes(settings: Settings) -> list[BaseRoute]:
    """The routes of the reader's side: /embed.js, /embed.css, /embed/form and, in demo mode, /demo."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )

    def html(name: str, context: dict[str, Any]) -> HTMLResponse:
        return HTMLResponse(env.get_template(name).render(context), headers=HTML_HEADERS)

    async def embed_form(request: Request) -> Response:
        """GET /embed/form?page=PAGE[&redirect=ARTICLE][&parent=ID]: the plain form as a fragment."""
        page = request.query_params.get("page", "").strip()
        if not 1 <= len(page) <= MAX_PAGE:
            return error_response(
                422, "validation_error", "page: 1 to 1024 characters",
                {"page": "1 to 1024 characters"},
            )
        parent_text = request.query_params.get("parent", "0")
        parent = int(parent_text) if parent_text.isdigit() and len(parent_text) < 12 else 0
        redirect = _http_url(request.query_params.get("redirect")) or _http_url(
            request.headers.get("referer")
        )
        return html("embed_form.html", _form_context(request, settings, page, redirect, parent))

    async def demo(request: Request) -> Response:
        """GET /demo: a sample article with the embed under it."""
        article = str(request.url.replace(query="", fragment=""))
        context = _form_context(request, settings, "/demo", article, 0)
        context["base"] = request.scope.get("root_path", "").rstrip("/") + "/"
        return html("demo.html", context)

    result: list[BaseRoute] = [
        Route("/" + name, _static(Asset.read(name, media_type)), methods=["GET", "HEAD"])
        for name, media_type in STATIC.items()
        if name.startswith("embed") or settings.demo
    ]
    result.append(Route("/embed/form", embed_form, methods=["GET", "HEAD"]))
    if settings.demo:
        result.append(Route("/demo", demo, methods=["GET", "HEAD"]))
    return result
