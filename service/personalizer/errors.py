"""Personalizer errors: ``{"error": {"code", "message", "target"?}}`` with Personalizer's codes.

The one exception base of the package; ``service.personalizer.api`` turns it into the answer
(both official SDKs parse these bodies into their exceptions)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from service.errors import InvalidInput


class PersonalizerError(Exception):
    status = 500
    code = "InternalServerError"

    def __init__(self, message: str, *, target: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.target = target
        self.headers = headers or {}

    def body(self) -> dict:
        error = {"code": self.code, "message": self.message}
        if self.target:
            error["target"] = self.target
        return {"error": error}


class BadRequest(PersonalizerError):
    status = 400
    code = "BadRequest"


class Unauthorized(PersonalizerError):
    status = 401
    code = "Unauthorized"


class Forbidden(PersonalizerError):
    status = 403
    code = "Forbidden"


class ResourceNotFound(PersonalizerError):
    status = 404
    code = "ResourceNotFound"


class ServiceUnavailable(PersonalizerError):
    status = 503
    code = "ServiceUnavailable"

    def __init__(self, message: str = "the event store is unavailable; retry shortly", **kw):
        kw.setdefault("headers", {"Retry-After": "1"})
        super().__init__(message, **kw)


@contextmanager
def personalizer_errors() -> Iterator[None]:
    """Refusals of the shared parsers (``service.inputs``: InvalidInput) as ``BadRequest``."""
    try:
        yield
    except InvalidInput as exc:
        raise BadRequest(exc.message, target=exc.field) from None
