"""The service's one exception hierarchy; ``service.app`` maps it to JSON errors in one place."""

from __future__ import annotations


class ServiceError(Exception):
    status = 500
    code = "internal"
    field_key = "field"  # the body's name for the offending argument

    def __init__(self, message: str, *, field: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        self.headers = headers or {}

    def body(self) -> dict:
        error = {"code": self.code, "message": self.message}
        if self.field:
            error[self.field_key] = self.field
        return {"error": error}

    @classmethod
    def body_schema(cls) -> dict:
        """The JSON schema of ``body()``, for /openapi.json."""
        fields = {"code": {"type": "string"}, "message": {"type": "string"}, cls.field_key: {"type": "string"}}
        return {
            "type": "object",
            "required": ["error"],
            "properties": {"error": {"type": "object", "required": ["code", "message"], "properties": fields}},
        }


class InvalidInput(ServiceError):
    status = 400
    code = "invalid_input"


class Unauthorized(ServiceError):
    status = 401
    code = "unauthorized"


class Forbidden(ServiceError):
    status = 403
    code = "forbidden"


class NotFound(ServiceError):
    status = 404
    code = "not_found"


class UnknownTitle(NotFound):
    code = "unknown_title"


class UnknownEvent(NotFound):
    code = "unknown_event"


class NotActivated(ServiceError):
    """A reward for a deferred decision that was not activated (yet)."""

    status = 409
    code = "not_activated"


class StoreUnavailable(ServiceError):
    """Redis did not answer (in time); callers fall back or answer 503."""

    status = 503
    code = "store_unavailable"

    def __init__(self, message: str = "the decision store is unavailable; retry shortly", **kw):
        kw.setdefault("headers", {"Retry-After": "1"})
        super().__init__(message, **kw)


class NotReplicated(StoreUnavailable):
    """The reward is on the primary but fewer replicas than ``REDIS_WAIT_REPLICAS`` confirmed it
    in time; a retry is counted once (it answers ``duplicate``, or ``recorded`` if a failover
    lost the first write)."""

    code = "not_replicated"

    def __init__(self, **kw):
        super().__init__("the reward is not yet on enough replicas; retry shortly (a retry is counted once)", **kw)
