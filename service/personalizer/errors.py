"""Personalizer errors: ``{"error": {"code", "message", "target"?}}`` with Personalizer's codes.

The package's exception base is a ``ServiceError`` whose offending argument is called ``target``
(Personalizer's name for it), so the app's one error handler answers it (both official SDKs parse
these bodies into their exceptions)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from service.errors import InvalidInput, ServiceError


class PersonalizerError(ServiceError):
    code = "InternalServerError"
    field_key = "target"

    def __init__(self, message: str, *, target: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message, field=target, headers=headers)


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
