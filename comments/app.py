"""The app factory: create_app(settings=None) -> Starlette."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import BaseRoute

from . import admin, adminweb, embed, notifyweb, openapi, public
from . import store
from .errors import ApiError
from .http import BodyLimitMiddleware, ErrorMiddleware, PublicCors, api_error_handler, http_error_handler
from .notify.worker import worker_loop
from .service import Service
from .settings import Settings


log = logging.getLogger("comments.upkeep")


async def upkeep_loop(service: Service, first_delay: float = 5.0) -> None:
    """Every COMMENTS_MAINTENANCE_SECONDS: anonymise expired personal data, purge old spam and trash.
    A lease in the database lets one worker (of any number, on any machine) do it at a time."""
    interval = service.settings.maintenance_seconds
    holder = f"{socket.gethostname()}:{os.getpid()}"
    await asyncio.sleep(first_delay)
    while True:
        try:
            now = store.utcnow()
            if await run_in_threadpool(store.take_lease, service.db, "upkeep", holder, now, max(1, interval - 1)):
                done = await run_in_threadpool(store.run_upkeep, service.db, now)
                log.info("upkeep: %d anonymised, %d purged, %d rate rows dropped",
                         done.anonymised, done.purged, done.rate_rows)
        except Exception as exc:  # noqa: BLE001 - the loop must survive a database outage
            log.warning("upkeep failed: %s; will try again", type(exc).__name__)
        await asyncio.sleep(interval)


def create_app(settings: Settings | None = None) -> Starlette:
    """Build the service; with no settings it reads the environment (and .env)."""
    settings = settings or Settings()
    service = Service(settings)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        task = asyncio.create_task(upkeep_loop(service))
        delivery = asyncio.create_task(worker_loop(service)) if settings.outbox_worker else None
        try:
            yield
        finally:
            task.cancel()
            if delivery is not None:
                delivery.cancel()
                await asyncio.wait([delivery], timeout=30)  # the delivery under way ends first
            service.db.dispose()

    routes: list[BaseRoute] = [*public.routes(), *admin.routes(), *embed.routes(settings), *openapi.routes(),
                               *adminweb.routes(settings), *notifyweb.routes(settings)]
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
    app.state.form_token_for = service.form_token
    return app
