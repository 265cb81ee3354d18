"""Flask app factory: ``gunicorn 'service.app:create_app()'``."""

from __future__ import annotations

import logging

import numpy as np
import orjson
from flask import Flask, Request, Response, jsonify, request
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import HTTPException

from service import admin, api, dashboard, explain, ops, personalizer
from service.config import Settings, load_settings
from service.cors import register_cors
from service.decisions import DecisionEngine
from service.errors import ServiceError
from service.fast_path import ArtworkFastPath
from service.json_logging import configure_logging
from service.keys import Keys
from service.prometheus_metrics import PrometheusMetrics
from service.redis_conn import STORE_ERRORS, connect
from service.request_hooks import register_request_hooks
from service.store import RedisStore

log = logging.getLogger(__name__)

class BodyLimitedRequest(Request):
    """A body sent without Content-Length (chunked) and reaching MAX_CONTENT_LENGTH is a 413.

    Werkzeug enforces the limit on such bodies by silently truncating them at the limit, so an
    oversize body would be judged on its first bytes (a 400, or worse, accepted).
    """

    def get_data(self, *args, **kwargs):  # type: ignore[override]
        data = super().get_data(*args, **kwargs)
        limit = self.max_content_length
        if self.content_length is None and limit is not None and len(data) >= limit:
            self.stream.read(1)  # reading past the limit raises RequestEntityTooLarge
        return data


class OrjsonProvider(DefaultJSONProvider):
    """JSON responses through orjson (a 40-title answer is ~10x cheaper to encode); keys keep
    their order, and anything orjson does not know (numpy scalars, ...) goes through Flask's
    default conversion."""

    sort_keys = False

    def dumps(self, obj, **kwargs) -> str:
        try:
            return orjson.dumps(obj, default=_to_builtin).decode()
        except TypeError:  # what orjson refuses (integers beyond 64 bits, ...): the standard encoder
            return super().dumps(obj, **kwargs)


def _to_builtin(value):
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return DefaultJSONProvider.default(value)


def create_app(settings: Settings | None = None, *, redis_client=None, metrics=None) -> Flask:
    settings = settings or load_settings()
    configure_logging(settings.log_level, settings.log_format)
    app = Flask(__name__)
    app.request_class = BodyLimitedRequest
    app.config["SETTINGS"] = settings
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json = OrjsonProvider(app)
    app.url_map.merge_slashes = False  # '/catalog//x' is a 404 JSON error, not a 308 redirect

    client = redis_client if redis_client is not None else connect(settings)
    store = RedisStore(
        client,
        Keys(settings.key_prefix),
        attribution_window_s=settings.attribution_window_s,
        log_maxlen=settings.decision_log_maxlen,
        wait_replicas=settings.redis_wait_replicas,
        wait_timeout_s=settings.redis_wait_timeout_s,
    )
    engine = DecisionEngine(store, settings, np.random.default_rng(settings.rng_seed))
    app.extensions["store"] = store
    app.extensions["engine"] = engine
    app.extensions["metrics"] = metrics or PrometheusMetrics(settings.prometheus_multiproc_dir)
    engine.on_fallback = app.extensions["metrics"].observe_fallback
    engine.models.on_loaded = app.extensions["metrics"].observe_model_version

    app.register_blueprint(api.bp)
    app.register_blueprint(admin.bp)
    app.register_blueprint(ops.bp)
    app.register_blueprint(dashboard.bp)
    app.register_blueprint(explain.bp)
    personalizer.install(app, settings, client)
    register_error_handlers(app)
    register_request_hooks(app)
    register_cors(app, settings.cors_origins)
    app.wsgi_app = ArtworkFastPath(app, settings.cors_origins)  # GET /artwork without Flask's overhead

    engine.catalog.refresh()  # seeds the catalog into Redis if Redis answers; never fails
    return app


def error_response(status: int, code: str, message: str, headers: dict | None = None) -> Response:
    response = jsonify({"error": {"code": code, "message": message}})
    response.status_code = status
    for k, v in (headers or {}).items():
        response.headers[k] = v
    return response


def register_error_handlers(app: Flask) -> None:
    """The one place where exceptions become JSON errors. No stack trace ever reaches a client."""

    @app.errorhandler(ServiceError)
    def service_error(exc: ServiceError):
        response = jsonify(exc.body())
        response.status_code = exc.status
        for k, v in exc.headers.items():
            response.headers[k] = v
        return response

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        code = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}.get(exc.code or 500, "http_error")
        headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
        return error_response(exc.code or 500, code, exc.description or exc.name, headers)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):
        if isinstance(exc, STORE_ERRORS):
            app.extensions["metrics"].observe_store_error(request.endpoint or "?", exc)
            return error_response(503, "store_unavailable", "the decision store is unavailable; retry shortly", {"Retry-After": "1"})
        log.exception("unhandled error on %s %s", request.method, request.path)
        return error_response(500, "internal", "internal error")
