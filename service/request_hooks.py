"""Per-request bookkeeping: request id, latency metric and the JSON access log line.

The request id is the caller's ``X-Request-ID`` when it is well formed (so a trace started by
a proxy or the front-end continues here), else a new one; it is echoed in the response header
and carried by every log record of the request.
"""

from __future__ import annotations

import logging
import re
import time
import uuid

from flask import Flask, Response, g, request

HEADER = "X-Request-ID"
_WELL_FORMED = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}")

access_log = logging.getLogger("service.access")


def request_id_from(header_value: str | None) -> str:
    if header_value and _WELL_FORMED.fullmatch(header_value):
        return header_value
    return uuid.uuid4().hex


def register_request_hooks(app: Flask) -> None:
    @app.before_request
    def start_request() -> None:
        g.request_id = request_id_from(request.headers.get(HEADER))
        g.started_at = time.perf_counter()

    @app.after_request
    def finish_request(response: Response) -> Response:
        request_id = g.get("request_id") or request_id_from(None)
        seconds = time.perf_counter() - g.get("started_at", time.perf_counter())
        response.headers[HEADER] = request_id
        # The route pattern, not the path: one series per endpoint whatever the ids in it.
        endpoint = request.url_rule.rule if request.url_rule is not None else "unmatched"
        app.extensions["metrics"].observe_request(endpoint, request.method, response.status_code, seconds)
        access_log.info(
            "%s %s %s",
            request.method,
            request.path,
            response.status_code,
            extra={
                "request_id": request_id,
                "method": request.method,
                "path": request.path,
                "status": response.status_code,
                "duration_ms": round(seconds * 1000, 3),
            },
        )
        return response
