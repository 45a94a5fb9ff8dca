"""ASGI plumbing: JSON answers, the request-size limit, error mapping, access log, CORS for public paths."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import STATUS_CODES, ApiError, error_response, unavailable

access_log = logging.getLogger("comments.access")
log = logging.getLogger("comments")

_JSON_OPTIONS = orjson.OPT_NAIVE_UTC | orjson.OPT_UTC_Z | orjson.OPT_OMIT_MICROSECONDS


def dumps(data: Any) -> bytes:
    """JSON bytes; datetimes (naive UTC) as RFC 3339 with Z."""
    return orjson.dumps(data, option=_JSON_OPTIONS)


def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return raw_json(dumps(data), status, headers)


def raw_json(body: bytes, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(body, status_code=status, media_type="application/json",
                    headers={"X-Content-Type-Options": "nosniff", **(headers or {})})


async def api_error_handler(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return exc.response()


async def http_error_handler(_request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 (unknown path, wrong method) in the contract's JSON shape."""
    assert isinstance(exc, HTTPException)
    code = STATUS_CODES.get(exc.status_code, "bad_request")
    messages = {404: "no such endpoint", 405: "method not allowed here"}
    message = messages.get(exc.status_code, str(exc.detail))
    return error_response(exc.status_code, code, message, headers=dict(exc.headers or {}))


class ErrorMiddleware:
    """Outermost guard: database outages become 503, anything unforeseen a bare 500 (logged
    without request data); logs one access line per request without query string or body.

    It also bounds the wait: once the request has arrived, an answer that is not ready within
    `answer_within` seconds (by default twice COMMENTS_DB_TIMEOUT_SECONDS plus one) is a 503,
    even when the database hangs without failing (a frozen host). The late work is cancelled;
    a database call already under way ends in its thread, and nothing more is sent."""

    def __init__(self, app: ASGIApp, answer_within: float | None = None) -> None:
        self.app = app
        self.answer_within = answer_within

    def _limit(self, scope: Scope) -> float | None:
        if self.answer_within is not None:
            return self.answer_within
        settings = getattr(getattr(getattr(scope.get("app"), "state", None), "service", None), "settings", None)
        timeout = getattr(settings, "db_timeout_seconds", None)
        return None if timeout is None else 2 * float(timeout) + 1

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = abandoned = reading = False
        status = 500
        begin = last_input = time.perf_counter()

        async def tracking_receive() -> Message:
            nonlocal reading, last_input
            reading = True  # waiting for the client is not waiting for us
            try:
                return await receive()
            finally:
                reading = False
                last_input = time.perf_counter()

        async def tracking_send(message: Message) -> None:
            nonlocal started, status
            if abandoned:
                return
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
            await send(message)

        limit = self._limit(scope)

        def overdue() -> bool:
            waited = time.perf_counter() - last_input
            return limit is not None and waited >= limit and not (work.done() or reading or started)

        work = asyncio.ensure_future(self.app(scope, tracking_receive, tracking_send))
        try:
            while not work.done():
                wait = None if limit is None else max(0.01, last_input + limit - time.perf_counter())
                await asyncio.wait({work}, timeout=wait)
                if overdue():
                    abandoned = True
                    _abandon(work)
                    log.warning("no answer within %.1f s on %s %s: 503", limit, scope["method"], scope["path"])
                    status = 503
                    await unavailable().response()(scope, receive, send)
                    return
            work.result()
        except ClientDisconnect:
            status = 499  # the client went away before it had sent the whole request
        except Exception as exc:  # noqa: BLE001 - the last line of defence
            response = self._answer(exc, scope)
            if not started:
                status = response.status_code
                await response(scope, receive, send)
        finally:
            if not work.done():  # we were cancelled (server shutting down): let the work end too
                work.cancel()
            access_log.info("%s %s %d %.1fms", scope["method"], scope["path"], status,
                            (time.perf_counter() - begin) * 1000)

    @staticmethod
    def _answer(exc: Exception, scope: Scope) -> Response:
        if isinstance(exc, ApiError):
            return exc.response()
        if isinstance(exc, (OperationalError, PoolTimeout)) or (
            isinstance(exc, DBAPIError) and exc.connection_invalidated
        ):
            log.warning("database unavailable: %s", type(exc.orig if isinstance(exc, DBAPIError) else exc).__name__)
            return unavailable().response()
        log.error("internal error %s on %s %s", type(exc).__name__, scope["method"], scope["path"])
        return error_response(500, "internal_error", "something went wrong on our side")


_abandoned: set[asyncio.Future[Any]] = set()


def _abandon(work: asyncio.Future[Any]) -> None:
    """Cancel late work and hold on to it until it has ended (a thread cannot be stopped)."""
    work.cancel()
    _abandoned.add(work)

    def done(finished: asyncio.Future[Any]) -> None:
        _abandoned.discard(finished)
        if not finished.cancelled() and finished.exception() is not None:
            log.info("abandoned request ended with %s", type(finished.exception()).__name__)

    work.add_done_callback(done)


class BodyLimitMiddleware:
    """Refuse request bodies over the limit: by Content-Length at once, else while they stream in."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_big = ApiError(413, f"the request body is larger than {self.max_bytes} bytes")
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await ApiError(400, "bad Content-Length").response()(scope, receive, send)
                    return
                if declared > self.max_bytes:
                    await too_big.response()(scope, receive, send)
                    return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise too_big
            return message

        await self.app(scope, limited, send)


class PublicCors:
    """CORS for the listed site origins on public paths only; never on the moderators' paths."""

    def __init__(self, app: ASGIApp, origins: tuple[str, ...]) -> None:
        self.app = app
        self.cors = CORSMiddleware(
            app, allow_origins=list(origins), allow_credentials=False,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["Content-Type", "X-Edit-Token", "If-None-Match"],
            expose_headers=["ETag", "Retry-After"], max_age=600,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] == "http" and not path.startswith(("/api/admin", "/admin")):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)


Handler = Callable[[Request], Awaitable[Response]]


def route(path: str, **handlers: Handler) -> Route:
    """One route for a path with a handler per method, so a wrong method's 405 lists them all."""
    by_method = {method.upper(): handler for method, handler in handlers.items()}

    async def dispatch(request: Request) -> Response:
        return await by_method[request.method if request.method != "HEAD" else "GET"](request)

    return Route(path, dispatch, methods=list(by_method), name=path)
