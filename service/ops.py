"""Ops calls: ``/stats``, ``/healthz``, ``/readyz``, ``/metrics``, ``/openapi.json``."""

from __future__ import annotations

import contextlib

from flask import Blueprint, Response, current_app, jsonify

from service.admin import require_ops_reader
from service.errors import NotFound, StoreUnavailable
from service.ids import check_id
from service.openapi import openapi_document
from service.redis_conn import STORE_ERRORS
from service.stats import title_stats

bp = Blueprint("ops", __name__)


def stats_for(title_ids: list[str]) -> list[dict]:
    engine = current_app.extensions["engine"]
    catalog = engine.catalog.get()
    store = engine.store
    try:
        counts = store.read_counts(title_ids)
        recent = store.recent_artworks(title_ids, current_app.config["SETTINGS"].recent_traffic_window)
    except STORE_ERRORS:
        raise StoreUnavailable() from None
    return [title_stats(engine.thompson, catalog[t], counts[t], recent[t]) for t in title_ids]


@bp.get("/stats")
def all_stats():
    require_ops_reader()
    titles = sorted(current_app.extensions["engine"].catalog.get())
    return jsonify({"titles": stats_for(titles)})


@bp.get("/stats/<title_id>")
def one_title_stats(title_id: str):
    require_ops_reader()
    check_id(title_id, "title")
    if title_id not in current_app.extensions["engine"].catalog.get():
        raise NotFound(f"unknown title: {title_id}", field="title")
    return jsonify(stats_for([title_id])[0])


@bp.get("/healthz")
def healthz():
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():
    engine = current_app.extensions["engine"]
    checks = {"redis": False, "catalog": False}
    with contextlib.suppress(STORE_ERRORS):
        checks["redis"] = engine.store.ping()
    if checks["redis"]:
        engine.catalog.refresh()
        checks["catalog"] = engine.catalog.loaded and bool(engine.catalog.titles)
    ready = all(checks.values())
    return jsonify({"status": "ready" if ready else "not_ready", "checks": checks}), (200 if ready else 503)


@bp.get("/metrics")
def metrics():
    require_ops_reader()
    body, content_type = current_app.extensions["metrics"].render()
    return Response(body, content_type=content_type)


@bp.get("/openapi.json")
def openapi():
    return jsonify(openapi_document())
