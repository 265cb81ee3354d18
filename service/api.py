"""Front-end calls: ``GET /artwork`` and ``POST /reward`` (with CORS)."""

from __future__ import annotations

import json
import math
import re
import time

from flask import Blueprint, current_app, jsonify, request

from service.errors import InvalidInput, StoreUnavailable, UnknownEvent
from service.ids import check_id, parse_event_id
from service.redis_conn import STORE_ERRORS

bp = Blueprint("api", __name__)

_CONTEXT_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
_MAX_CONTEXT = 16


def parse_context(args) -> dict[str, str]:
    """Extra query parameters are context features (device, country, hour, ...)."""
    context: dict[str, str] = {}
    for name in args:
        if name in ("profile", "title"):
            continue
        if not _CONTEXT_NAME.fullmatch(name):
            raise InvalidInput(f"context parameter names must match {_CONTEXT_NAME.pattern}", field=name[:64])
        values = args.getlist(name)
        if len(values) != 1:
            raise InvalidInput(f"context parameter {name} must be given once", field=name)
        value = values[0]
        if not 1 <= len(value) <= 64 or not value.isprintable():
            raise InvalidInput(f"context parameter {name} must be 1-64 printable characters", field=name)
        if name == "hour" and not (value.isdigit() and 0 <= int(value) <= 23):
            raise InvalidInput("hour must be an integer from 0 to 23", field="hour")
        context[name] = value
    if len(context) > _MAX_CONTEXT:
        raise InvalidInput(f"at most {_MAX_CONTEXT} context parameters", field="context")
    return context


@bp.get("/artwork")
def artwork():
    return jsonify(answer_artwork(current_app, request.args))


def answer_artwork(app, args) -> dict:
    """The answer to ``GET /artwork`` with query ``args``: validated, decided, counted.

    Shared by the view above and ``service.fast_path``, which serves the same request without
    Flask's per-request machinery.
    """
    engine = app.extensions["engine"]
    profile = check_id(args.get("profile"), "profile")
    titles = args.getlist("title")
    if not titles:
        raise InvalidInput("title is required (repeat it for a batch)", field="title")
    limit = app.config["SETTINGS"].max_batch_titles
    if len(titles) > limit:
        raise InvalidInput(f"at most {limit} titles per request", field="title")
    for t in titles:
        check_id(t, "title")
    context = parse_context(args)
    decisions = engine.decide(profile, titles, context)
    app.extensions["metrics"].observe_decisions(decisions)
    if len(titles) == 1:
        return decisions[0].to_json()
    return {"profile": profile, "decisions": [d.to_json() for d in decisions]}


def parse_reward_body(raw: bytes) -> tuple[str, float]:
    """(event_id, reward) from a body sent as JSON whatever its content type (sendBeacon)."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("body must be a JSON object {\"event_id\": ..., \"reward\": 0..1}", field="body") from None
    if not isinstance(body, dict):
        raise InvalidInput("body must be a JSON object {\"event_id\": ..., \"reward\": 0..1}", field="body")
    if "event_id" not in body:
        raise InvalidInput("event_id is required", field="event_id")
    reward = body.get("reward", 1)
    if isinstance(reward, bool) or not isinstance(reward, int | float) or not math.isfinite(reward):
        raise InvalidInput("reward must be a number in [0, 1]", field="reward")
    if not 0 <= reward <= 1:
        raise InvalidInput("reward must be a number in [0, 1]", field="reward")
    return body["event_id"], float(reward)


@bp.post("/reward")
def reward():
    store = current_app.extensions["store"]
    event_id, value = parse_reward_body(request.get_data(cache=False))
    title, token = parse_event_id(event_id)
    try:
        outcome = store.record_reward(title, token, event_id, value, time.time())
    except STORE_ERRORS as exc:
        current_app.extensions["metrics"].observe_store_error("reward", exc)
        raise StoreUnavailable() from None
    if outcome.status == "unknown":
        raise UnknownEvent("unknown or expired event_id (rewards count only inside the attribution window)", field="event_id")
    current_app.extensions["metrics"].observe_reward(title, outcome)
    return jsonify({"status": outcome.status})
