"""``GET /dashboard``: the ops page, and ``GET /dashboard/data``, the JSON it polls.

The page is static HTML with a small inline script (no build, no CDN): it fetches
``/dashboard/data`` every few seconds and redraws. The data is ``/stats`` (same Redis counters)
plus each title's per-minute traffic history and the health counters of the metrics object.
"""

from __future__ import annotations

import time

from flask import Blueprint, current_app, jsonify, render_template, request

from service.admin import require_ops_reader
from service.errors import StoreUnavailable
from service.inputs import ascii_int
from service.ops import stats_for
from service.redis_conn import STORE_ERRORS
from service.store import TRAFFIC_BUCKET_S, TRAFFIC_RETENTION_S

bp = Blueprint("dashboard", __name__, template_folder="templates")

DEFAULT_MINUTES = 60
MAX_MINUTES = TRAFFIC_RETENTION_S // TRAFFIC_BUCKET_S
DEFAULT_REFRESH_S = 5


def _int_arg(name: str, default: int, lo: int, hi: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    return ascii_int(raw, name, lo, hi)


@bp.get("/dashboard")
def page():
    require_ops_reader()
    refresh_s = _int_arg("refresh", DEFAULT_REFRESH_S, 1, 3600)
    minutes = _int_arg("minutes", DEFAULT_MINUTES, 1, MAX_MINUTES)
    return render_template("dashboard.html", refresh_s=refresh_s, minutes=minutes)


@bp.get("/dashboard/data")
def data():
    require_ops_reader()
    minutes = _int_arg("minutes", DEFAULT_MINUTES, 1, MAX_MINUTES)
    engine = current_app.extensions["engine"]
    titles = sorted(engine.catalog.get())
    stats = stats_for(titles)
    now = time.time()
    try:
        history = engine.store.traffic_history(titles, minutes, now)
    except STORE_ERRORS:
        raise StoreUnavailable() from None
    for entry in stats:
        entry["history"] = [{"t": t, "counts": counts} for t, counts in history[entry["title"]]]
    return jsonify(
        {
            "generated_at": now,
            "bucket_s": TRAFFIC_BUCKET_S,
            "totals": current_app.extensions["metrics"].totals(),
            "titles": stats,
        }
    )
