"""Ops calls: ``/stats``, ``/healthz``, ``/readyz``, ``/metrics``, ``/openapi.json``."""

from __future__ import annotations

import time
from collections.abc import Callable

import redis
from flask import Blueprint, Response, current_app, jsonify

from service.admin import require_ops_reader
from service.errors import NotFound, StoreUnavailable
from service.ids import check_id
from service.openapi import openapi_document
from service.redis_conn import STORE_ERRORS
from service.stats import title_stats

bp = Blueprint("ops", __name__)


def ops_cached(key: tuple, compute: Callable[[], object]) -> object:
    """``compute()``, or this worker's copy of it if younger than STATS_CACHE_S.

    Any number of ops pollers cost a worker at most one computation per STATS_CACHE_S (default
    1 s), the staleness its decisions already accept for the same counters.
    """
    cache = current_app.extensions.setdefault("ops_cache", {})
    now = time.monotonic()
    hit = cache.get(key)
    if hit is not None and now - hit[0] < current_app.config["SETTINGS"].stats_cache_s:
        return hit[1]
    value = compute()
    if len(cache) > 64:  # keys are a few endpoints x bounded arguments; drop old entries
        cache.clear()
    cache[key] = (now, value)
    return value


def cached_json(key: tuple, compute: Callable[[], object]) -> Response:
    """A JSON answer from this worker's copy of its encoded body (see ``ops_cached``): a poll
    that finds a copy costs about as much as ``/healthz``."""
    body = ops_cached(("json", *key), lambda: current_app.json.dumps(compute()).encode())
    return Response(body, mimetype="application/json")


def stats_for(title_ids: list[str]) -> list[dict]:
    """/stats of ``title_ids``: the arms counters and the last minutes' traffic counters (bounded
    reads whatever the log's length: ~1 + RECENT_TRAFFIC_MINUTES hashes per title)."""
    engine = current_app.extensions["engine"]
    catalog = engine.catalog.get()
    store = engine.store
    try:
        counts = store.read_counts(title_ids)
        recent = store.recent_traffic(title_ids, current_app.config["SETTINGS"].recent_traffic_minutes, time.time())
    except STORE_ERRORS:
        raise StoreUnavailable() from None
    now = time.time()
    return [title_stats(engine.thompson, catalog[t], counts[t], recent[t], now) for t in title_ids]


def all_title_stats() -> list[dict]:
    titles = sorted(current_app.extensions["engine"].catalog.get())
    return ops_cached(("stats", tuple(titles)), lambda: stats_for(titles))  # type: ignore[return-value]


@bp.get("/stats")
def all_stats():
    require_ops_reader()
    return cached_json(("stats",), lambda: {"titles": all_title_stats()})


@bp.get("/stats/<title_id>")
def one_title_stats(title_id: str):
    require_ops_reader()
    check_id(title_id, "title")
    if title_id not in current_app.extensions["engine"].catalog.get():
        raise NotFound(f"unknown title: {title_id}", field="title")
    return cached_json(("stats", title_id), lambda: stats_for([title_id])[0])


@bp.get("/healthz")
def healthz():
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():
    """Ready when Redis answers and accepts a write (not out of memory, not a read-only replica,
    not failing to persist) and the catalog is loaded; otherwise 503 with the reason."""
    engine = current_app.extensions["engine"]
    checks = {"redis": False, "writable": False, "catalog": False}
    reason = None
    try:
        checks["redis"] = engine.store.ping()
        engine.store.write_probe()
        checks["writable"] = True
    except redis.exceptions.OutOfMemoryError:
        reason = "Redis refuses writes (OOM): out of memory, maxmemory reached"
    except redis.exceptions.ReadOnlyError:
        reason = "Redis refuses writes (READONLY): a read-only replica"
    except redis.ResponseError as exc:  # answered but refused (MISCONF, ...): its error code says why
        reason = f"Redis refuses writes ({str(exc).split(' ', 1)[0]})"
    except STORE_ERRORS as exc:
        reason = f"Redis does not answer ({type(exc).__name__})"
    if checks["redis"]:
        engine.catalog.refresh()
        checks["catalog"] = engine.catalog.loaded and bool(engine.catalog.titles)
        if not checks["catalog"] and reason is None:
            reason = "no catalog loaded"
    ready = all(checks.values())
    body = {"status": "ready" if ready else "not_ready", "checks": checks}
    if not ready:
        body["reason"] = reason or "not ready"
    return jsonify(body), (200 if ready else 503)


@bp.get("/metrics")
def metrics():
    require_ops_reader()
    body, content_type = current_app.extensions["metrics"].render()
    return Response(body, content_type=content_type)


@bp.get("/openapi.json")
def openapi():
    return jsonify(openapi_document())
