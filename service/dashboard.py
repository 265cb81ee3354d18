"""``GET /dashboard``: the ops page, and ``GET /dashboard/data``, the JSON it polls.

The page is static HTML with a small inline script (no build, no CDN): it fetches
``/dashboard/data`` every few seconds and redraws. The data is ``/stats`` (same Redis counters)
plus each title's traffic history (per minute, or coarser points for long spans: at most
MAX_POINTS + 1) and the health counters of the metrics object.
"""

from __future__ import annotations

import copy
import time

from flask import Blueprint, current_app, render_template, request

from service.admin import require_ops_reader
from service.errors import StoreUnavailable
from service.inputs import ascii_int
from service.ops import all_title_stats, cached_json
from service.redis_conn import STORE_ERRORS
from service.store import TRAFFIC_BUCKET_S, TRAFFIC_RETENTION_S

bp = Blueprint("dashboard", __name__, template_folder="templates")

DEFAULT_MINUTES = 60
MAX_MINUTES = TRAFFIC_RETENTION_S // TRAFFIC_BUCKET_S
DEFAULT_REFRESH_S = 5
# Longer spans are summed into coarser points: the answer stays small (a title, an artwork: 120 numbers).
MAX_POINTS = 120


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
    return cached_json(("dashboard", minutes), lambda: _data(minutes))


def _data(minutes: int) -> dict:
    engine = current_app.extensions["engine"]
    titles = sorted(engine.catalog.get())
    stats = copy.deepcopy(all_title_stats())  # the cached /stats copy is shared: not modified
    now = time.time()
    try:
        step, history = traffic_history(titles, minutes, now)
    except STORE_ERRORS:
        raise StoreUnavailable() from None
    for entry in stats:
        entry["history"] = [{"t": t, "counts": counts} for t, counts in history.get(entry["title"], [])]
    return {
        "generated_at": now,
        "bucket_s": TRAFFIC_BUCKET_S * step,
        "totals": current_app.extensions["metrics"].totals(),
        "titles": stats,
    }


def traffic_history(titles: list[str], minutes: int, now: float) -> tuple[int, dict[str, list[tuple[int, dict[str, int]]]]]:
    """(minutes per point, per title its points oldest first: (start epoch s, artwork -> decisions)).

    At most MAX_POINTS + 1 points, aligned on multiples of the step (the first may start up to
    a step before the span). A point that is over (one minute past its end, for decisions in
    flight) never changes: the worker keeps it, so a poll reads only the latest points.
    """
    step = -(-minutes // MAX_POINTS)
    last = int(now // TRAFFIC_BUCKET_S)
    points = range((last - minutes + 1) // step, last // step + 1)
    engine = current_app.extensions["engine"]
    final = current_app.extensions.setdefault("traffic_points", {})  # (title, step, point) -> counts
    # Old points and steps, or a new catalog version (an edit, or `reset` of a title's history): start over.
    if len(final) > 8 * (MAX_POINTS + 1) * max(len(titles), 1) or final.get("version") != engine.catalog.version:
        final.clear()
        final["version"] = engine.catalog.version
    missing = {t: [p for p in points if (t, step, p) not in final] for t in titles}
    sums = engine.store.traffic_sums(
        {t: [range(p * step, min(p * step + step, last + 1)) for p in ps] for t, ps in missing.items()}, now
    )
    history = {}
    for t in titles:
        fresh = dict(zip(missing[t], sums[t], strict=True))
        for p, counts in fresh.items():
            if p * step + step - 1 < last - 1:
                final[(t, step, p)] = counts
        history[t] = [(p * step * TRAFFIC_BUCKET_S, fresh[p] if p in fresh else final[(t, step, p)]) for p in points]
    return step, history
