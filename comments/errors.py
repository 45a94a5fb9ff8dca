"""One ApiError and the one JSON error shape that every failure answers with."""

from __future__ import annotations

from collections.abc import Mapping

import orjson
from starlette.responses import Response

STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "duplicate",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    503: "unavailable",
}


class ApiError(Exception):
    """An answer other than success: status, contract code, message and failing fields."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        fields: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or STATUS_CODES[status]
        self.message = message
        self.fields = dict(fields or {})
        self.headers = dict(headers or {})

    def response(self) -> Response:
        """The JSON answer for this error."""
        return error_response(self.status, self.code, self.message, self.fields, self.headers)


def validation_error(fields: Mapping[str, str]) -> ApiError:
    """A 422 naming every failing field."""
    message = "; ".join(f"{name}: {problem}" for name, problem in fields.items())
    return ApiError(422, message, fields=fields)


def not_found(what: str = "comment") -> ApiError:
    return ApiError(404, f"{what} not found")


def unauthorized() -> ApiError:
    """The one 401: it never says which part was wrong."""
    return ApiError(
        401, "a valid moderator token is required", headers={"WWW-Authenticate": "Bearer"}
    )


def unavailable(retry_after: int = 5) -> ApiError:
    return ApiError(
        503, "the database is not answering; try again shortly",
        headers={"Retry-After": str(retry_after)},
    )


def error_response(
    status: int,
    code: str,
    message: str,
    fields: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """Build the contract's error body: {"error": {"code", "message"[, "fields"]}}."""
    error: dict[str, object] = {"code": code, "message": message}
    if fields:
        error["fields"] = dict(fields)
    return Response(
        orjson.dumps({"error": error}),
        status_code=status,
        media_type="application/json",
        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store", **(headers or {})},
    )
