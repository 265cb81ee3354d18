"""``GET /artwork`` without Flask's per-request machinery: a WSGI front installed by create_app.

Profiled under gunicorn, Flask's request and app contexts, context-local proxies, hooks and
Response object cost about as much CPU as the decision itself on a one-title request. This
front answers ``GET /artwork`` with the very pieces the Flask view uses: werkzeug's parsing of
the query string, ``service.api.answer_artwork`` (validation, decision, metrics), the app's
JSON provider, and ``service.request_hooks`` / ``service.cors`` for the request id, latency
metric, access line and headers. An exception is answered by the app's error handlers inside a
Flask request context (errors are still mapped in one place, and nothing is decided twice).
Every other request goes to Flask.
"""

from __future__ import annotations

import time
from urllib.parse import parse_qsl

from flask import Flask, g
from werkzeug.datastructures import ImmutableMultiDict

from service.api import answer_artwork
from service.cors import allowed_origin
from service.request_hooks import HEADER, bind_request_id, record_request, request_id_from, unbind_request_id

PATH = "/artwork"


def _parse_query(query: str) -> list[tuple[str, str]]:
    """``parse_qsl(query, keep_blank_values=True)`` as werkzeug calls it. A query without '%'
    and '+' (ids are plain: the usual case) has nothing to unquote, so it is only split, as
    parse_qsl splits it: a fifth of the parsing's cost on a 40-title batch."""
    if "%" in query or "+" in query:
        return parse_qsl(query, keep_blank_values=True, errors="werkzeug.url_quote")
    pairs = []
    for part in query.split("&"):
        if part:
            name, _, value = part.partition("=")
            pairs.append((name, value))
    return pairs


class ArtworkFastPath:
    """WSGI middleware: ``app.wsgi_app = ArtworkFastPath(app, cors_origins)``."""

    def __init__(self, app: Flask, cors_origins: tuple[str, ...]):
        self.app = app
        self.flask_wsgi = app.wsgi_app
        self.cors_origins = cors_origins
        # What this front does in place of Flask's hooks: the request-id/metric/access-line
        # hooks and CORS. Another app-wide hook would be skipped silently, so refuse to start.
        hooks = {
            "before_request": (app.before_request_funcs, 1),
            "after_request": (app.after_request_funcs, 2),
            "teardown_request": (app.teardown_request_funcs, 1),
            "url_value_preprocessor": (app.url_value_preprocessors, 0),
        }
        for kind, (table, expected) in hooks.items():
            found = len(table.get(None, ())) + len(table.get("api", ()))
            if found != expected:
                raise RuntimeError(f"ArtworkFastPath replicates {expected} app-wide {kind} hook(s), the app has {found}")

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") != PATH or environ.get("REQUEST_METHOD") != "GET" or self.app.debug:
            return self.flask_wsgi(environ, start_response)
        started = time.perf_counter()
        request_id = request_id_from(environ.get("HTTP_X_REQUEST_ID"))
        token = bind_request_id(request_id)
        try:
            try:
                # Exactly werkzeug's Request.args.
                query = environ.get("QUERY_STRING", "").encode("latin1").decode()
                args = ImmutableMultiDict(_parse_query(query))
                body = f"{self.app.json.dumps(answer_artwork(self.app, args))}\n".encode()
            except Exception as exc:
                return self._answer_error(environ, start_response, exc, request_id, started)
            headers = [
                ("Content-Type", self.app.json.mimetype),
                ("Content-Length", str(len(body))),
                (HEADER, request_id),
                ("Cache-Control", "no-store"),
            ]
            origin = allowed_origin(self.cors_origins, environ.get("HTTP_ORIGIN"))
            if origin is not None:
                headers.append(("Access-Control-Allow-Origin", origin))
                if origin != "*":
                    headers.append(("Vary", "Origin"))
            record_request(self.app, request_id, "GET", PATH, PATH, 200, time.perf_counter() - started)
            start_response("200 OK", headers)
            return [body]
        finally:
            unbind_request_id(token)

    def _answer_error(self, environ, start_response, exc: Exception, request_id: str, started: float):
        """Flask's answer to ``exc`` raised by the view: its error handler, then its after-request
        hooks (id header, metric, access line, CORS), as in ``Flask.wsgi_app``."""
        app = self.app
        ctx = app.request_context(environ)
        error: BaseException | None = None
        try:
            try:
                ctx.push()
                g.request_id, g.started_at = request_id, started  # what the before-request hook sets
                response = app.finalize_request(app.handle_user_exception(exc))
            except Exception as e:
                error = e
                response = app.handle_exception(e)
            return response(environ, start_response)
        finally:
            if error is not None and app.should_ignore_error(error):
                error = None
            ctx.pop(error)
