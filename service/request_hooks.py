"""Per-request bookkeeping: request id, latency metric and the JSON access log line.

The request id is the caller's ``X-Request-ID`` when it is well formed (so a trace started by
a proxy or the front-end continues here), else a new one; it is echoed in the response header
and carried by every log record of the request (``current_request_id``). Flask requests get
all of this from the hooks below; ``service.fast_path`` calls the same functions.
"""

from __future__ import annotations

import logging
import os
import re
import time
from contextvars import ContextVar

from flask import Flask, Response, g, request

HEADER = "X-Request-ID"
_WELL_FORMED = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}")

access_log = logging.getLogger("service.access")

# The id of the request being served in this thread (None outside a request): read by the
# JSON log formatter, so records logged while serving carry it whichever path served.
_request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
current_request_id = _request_id.get


def request_id_from(header_value: str | None) -> str:
    if header_value and _WELL_FORMED.fullmatch(header_value):
        return header_value
    # 128 random bits as 32 hex digits (what uuid4().hex looked like, minus its version bits):
    # building a UUID object cost ~5% of a one-title /artwork.
    return os.urandom(16).hex()


def bind_request_id(request_id: str):
    """Make ``request_id`` the current one; returns the token for ``unbind_request_id``."""
    return _request_id.set(request_id)


def unbind_request_id(token) -> None:
    _request_id.reset(token)


def record_request(
    app: Flask, request_id: str, method: str, path: str, endpoint: str, status: int, seconds: float
) -> None:
    """The latency metric and the access line of one answered request."""
    app.extensions["metrics"].observe_request(endpoint, method, status, seconds)
    if access_log.isEnabledFor(logging.INFO):
        # makeRecord + handle is what Logger.info does, minus looking up the caller's source
        # line (no formatter here prints it): a measurable share of a request's time.
        access_log.handle(
            access_log.makeRecord(
                access_log.name, logging.INFO, "(request_hooks)", 0, "%s %s %s", (method, path, status), None,
                extra={
                    "request_id": request_id,
                    "method": method,
                    "path": path,
                    "status": status,
                    "duration_ms": round(seconds * 1000, 3),
                },
            )
        )


def register_request_hooks(app: Flask) -> None:
    @app.before_request
    def start_request() -> None:
        g.request_id = request_id_from(request.headers.get(HEADER))
        g.started_at = time.perf_counter()
        g.request_id_token = bind_request_id(g.request_id)

    @app.after_request
    def finish_request(response: Response) -> Response:
        request_id = g.get("request_id") or request_id_from(None)
        seconds = time.perf_counter() - g.get("started_at", time.perf_counter())
        response.headers[HEADER] = request_id
        # The route pattern, not the path: one series per endpoint whatever the ids in it.
        endpoint = request.url_rule.rule if request.url_rule is not None else "unmatched"
        record_request(app, request_id, request.method, request.path, endpoint, response.status_code, seconds)
        return response

    @app.teardown_request
    def end_request(_exc: BaseException | None) -> None:
        token = g.pop("request_id_token", None)
        if token is not None:
            unbind_request_id(token)
