"""The HTTP server: uvicorn, with a deadline for requests that arrive too slowly (the only module that imports it)."""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("comments")


class DeadlineHttpProtocol(HttpToolsProtocol):
    """uvicorn's HTTP protocol with the limit uvicorn lacks: a request must arrive whole, headers
    and body, within `request_timeout` seconds of its first byte (of connecting, for the first
    request), or the connection is closed; slow or idle clients cannot hold it open."""

    def __init__(self, *args: Any, request_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.request_timeout = request_timeout
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._arm()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._deadline is None:
            self._deadline = self.loop.call_later(self.request_timeout, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if not self.transport.is_closing():
            log.info("a request did not arrive within %.0f s: connection closed", self.request_timeout)
            self.transport.close()


def run(host: str, port: int, workers: int, request_timeout: float, log_config: dict[str, Any]) -> None:
    """Serve the app factory until stopped; `workers` > 1 starts that many processes."""
    uvicorn.run(
        "comments.app:create_app",
        factory=True,
        host=host,
        port=port,
        workers=workers if workers > 1 else None,
        proxy_headers=False,  # COMMENTS_TRUSTED_PROXIES decides whom to believe, not uvicorn
        server_header=False,
        access_log=False,
        log_config=log_config,
        timeout_keep_alive=5,
        # uvicorn has no timeout for a request that arrives slowly: this protocol adds one.
        http=functools.partial(DeadlineHttpProtocol, request_timeout=request_timeout),  # type: ignore[arg-type]
    )
