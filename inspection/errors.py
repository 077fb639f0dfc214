"""Domain errors raised by services, and the one place that maps them to HTTP."""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions as drf_exceptions
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler


class DomainError(Exception):
    """A business rule said no. ``code`` is stable for clients; ``status`` is the HTTP answer."""

    status = 400
    code = "invalid"

    def __init__(self, detail: str, *, code: str | None = None, extra: dict[str, Any] | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code
        # Plain JSON data the client needs to recover, sent beside code and detail (e.g. the
        # stored state a stale write lost against).
        self.extra = extra or {}


class InvalidInput(DomainError):
    status = 400
    code = "invalid"


class InvalidImage(InvalidInput):
    code = "invalid_image"


class PayloadTooLarge(DomainError):
    status = 413
    code = "payload_too_large"


class Gone(DomainError):
    """It existed and was removed on purpose (e.g. by the retention policy)."""

    status = 410
    code = "gone"


class NotFound(DomainError):
    """Also what a caller gets for another project's object: its existence is not revealed."""

    status = 404
    code = "not_found"


class Forbidden(DomainError):
    status = 403
    code = "forbidden"


class Conflict(DomainError):
    status = 409
    code = "conflict"


class TooManyAttempts(DomainError):
    """429 with Retry-After (seconds)."""

    status = 429
    code = "too_many_attempts"

    def __init__(self, detail: str, *, code: str | None = None, retry_after: int = 60) -> None:
        super().__init__(detail, code=code, extra={"retry_after": retry_after})
        self.retry_after = retry_after


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DomainError):
        refused = Response({**exc.extra, "code": exc.code, "detail": exc.detail}, status=exc.status)
        if isinstance(exc, TooManyAttempts):
            refused["Retry-After"] = str(exc.retry_after)
        return refused
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(exc, drf_exceptions.APIException):
        detail = response.data
        if isinstance(detail, dict) and set(detail) == {"detail"}:
            response.data = {"code": getattr(exc.detail, "code", exc.default_code), "detail": detail["detail"]}
        else:
            response.data = {"code": exc.default_code, "detail": "Invalid input.", "errors": detail}
    return response
