"""The app factory: create_app(settings=None) -> Starlette."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import BaseRoute

from . import admin, embed, public
from .errors import ApiError
from .http import BodyLimitMiddleware, ErrorMiddleware, PublicCors, api_error_handler, http_error_handler
from .service import Service
from .settings import Settings


def create_app(settings: Settings | None = None) -> Starlette:
    """Build the service; with no settings it reads the environment (and .env)."""
    settings = settings or Settings()
    service = Service(settings)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        yield
        service.db.dispose()

    routes: list[BaseRoute] = [*public.routes(), *admin.routes(), *embed.routes(settings)]
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(ErrorMiddleware),
            Middleware(PublicCors, origins=settings.site_origins),
            Middleware(BodyLimitMiddleware, max_bytes=settings.max_request_bytes),
        ],
        exception_handlers={ApiError: api_error_handler, HTTPException: http_error_handler},
        lifespan=lifespan,
    )
    app.state.service = service
    return app
