"""Front-end calls: ``GET /artwork`` and ``POST /reward`` (with CORS)."""

from __future__ import annotations

import re
import time

from flask import Blueprint, current_app, jsonify, request

from service.catalog import SIGNAL
from service.decisions import Decision
from service.errors import InvalidInput, NotActivated, NotReplicated, StoreUnavailable, UnknownEvent
from service.ids import check_id, parse_event_id
from service.inputs import json_body, number
from service.redis_conn import STORE_ERRORS

bp = Blueprint("api", __name__)

_CONTEXT_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
# Context values: 1-64 characters, no control characters (C0, DEL, C1); hour: 0-23 in ASCII digits.
CONTEXT_VALUE = re.compile(r"[^\x00-\x1f\x7f-\x9f]{1,64}")
HOUR = re.compile(r"[01]?[0-9]|2[0-3]")
_MAX_CONTEXT = 16


def parse_context(args) -> dict[str, str]:
    """Extra query parameters are context features (device, country, hour, ...)."""
    context: dict[str, object] = {}
    for name in args:
        if name in ("profile", "title", "defer_activation"):
            continue
        _check_context_name(name)
        values = args.getlist(name)
        if len(values) != 1:
            raise InvalidInput(f"context parameter {name} must be given once", field=name)
        context[name] = values[0]
    return check_context(context)


def _check_context_name(name: object) -> None:
    if not isinstance(name, str) or not _CONTEXT_NAME.fullmatch(name):
        raise InvalidInput(f"context parameter names must match {_CONTEXT_NAME.pattern}", field=str(name)[:64])


def check_context(context: dict) -> dict[str, str]:
    """Validated context features (query parameters, or a JSON body's ``context`` object, whose
    integer values are taken as their decimal text)."""
    if len(context) > _MAX_CONTEXT:
        raise InvalidInput(f"at most {_MAX_CONTEXT} context parameters", field="context")
    checked: dict[str, str] = {}
    for name, value in context.items():
        _check_context_name(name)
        if isinstance(value, float) and value.is_integer():  # 3.0 is the integer 3 in JSON
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str) or not CONTEXT_VALUE.fullmatch(value):
            raise InvalidInput(f"context parameter {name} must be 1-64 characters without control characters", field=name)
        if name == "hour" and not HOUR.fullmatch(value):
            raise InvalidInput("hour must be an integer from 0 to 23 (ASCII digits)", field="hour")
        checked[name] = value
    return checked


def _check_titles(app, titles: list) -> list[str]:
    if not titles:
        raise InvalidInput("title is required (repeat it for a batch)", field="title")
    limit = app.config["SETTINGS"].max_batch_titles
    if len(titles) > limit:
        raise InvalidInput(f"at most {limit} titles per request", field="title")
    return [check_id(t, "title") for t in titles]


def parse_defer(args) -> bool:
    """``defer_activation=1``: the decisions count only once ``POST /activate`` reports them
    displayed (like Personalizer's ``deferActivation``); ``0`` or absent: they count now."""
    values = args.getlist("defer_activation")
    if not values:
        return False
    if len(values) != 1 or values[0] not in ("0", "1"):
        raise InvalidInput("defer_activation must be given once, as 0 or 1", field="defer_activation")
    return values[0] == "1"


def _decide(app, profile: str, titles: list[str], context: dict[str, str], deferred: bool = False) -> list[Decision]:
    decisions = app.extensions["engine"].decide(profile, titles, context, deferred)
    app.extensions["metrics"].observe_decisions(decisions)
    return decisions


def _artwork_query(app, args) -> tuple[str, list[str], dict[str, str], bool]:
    """(profile, titles, context, deferred) of a ``GET /artwork`` query, validated."""
    profiles = args.getlist("profile")
    if len(profiles) > 1:
        raise InvalidInput("profile must be given once", field="profile")
    profile = check_id(profiles[0] if profiles else None, "profile")
    return profile, _check_titles(app, args.getlist("title")), parse_context(args), parse_defer(args)


@bp.get("/artwork")
def artwork():
    if request.method == "HEAD":  # answers like GET (400, 404, 200), but decides and records nothing
        _, titles, _, _ = _artwork_query(current_app, request.args)
        current_app.extensions["engine"].titles_for(titles)
        return current_app.response_class(status=200, mimetype="application/json")
    return jsonify(answer_artwork(current_app, request.args))


def answer_artwork(app, args) -> dict:
    """The answer to ``GET /artwork`` with query ``args``: validated, decided, counted.

    Shared by the view above and ``service.fast_path``, which serves the same request without
    Flask's per-request machinery.
    """
    profile, titles, context, deferred = _artwork_query(app, args)
    decisions = _decide(app, profile, titles, context, deferred)
    if len(titles) == 1:
        return decisions[0].to_json()
    return {"profile": profile, "decisions": [d.to_json() for d in decisions]}


_BATCH_FIELDS = {"profile", "titles", "context", "defer_activation"}


@bp.post("/artwork")
def artwork_batch():
    """The batch call as a JSON body, for pages whose query would be too long."""
    body = json_body(request.get_data(cache=False), 'body must be a JSON object {"profile", "titles": [...], "context": {...}}')
    if not isinstance(body, dict):
        raise InvalidInput('body must be a JSON object {"profile", "titles": [...], "context": {...}}', field="body")
    unknown = set(body) - _BATCH_FIELDS
    if unknown:
        raise InvalidInput(f"unknown fields: {', '.join(sorted(unknown))} (allowed: profile, titles, context, defer_activation)", field=sorted(unknown)[0][:64])
    profile = check_id(body.get("profile"), "profile")
    titles = body.get("titles")
    if not isinstance(titles, list):
        raise InvalidInput("titles must be a list of title ids", field="titles")
    titles = _check_titles(current_app, titles)
    context = body.get("context", {})
    if not isinstance(context, dict):
        raise InvalidInput("context must be a JSON object of features", field="context")
    deferred = body.get("defer_activation", False)
    if not isinstance(deferred, bool):
        raise InvalidInput("defer_activation must be true or false", field="defer_activation")
    decisions = _decide(current_app, profile, titles, check_context(context), deferred)
    return jsonify({"profile": profile, "decisions": [d.to_json() for d in decisions]})


def parse_reward_body(raw: bytes) -> tuple[str, float, str | None]:
    """(event_id, reward, signal) from a body sent as JSON whatever its content type (sendBeacon)."""
    body = json_body(raw, "body must be a JSON object {\"event_id\": ..., \"reward\": 0..1}")
    if not isinstance(body, dict):
        raise InvalidInput("body must be a JSON object {\"event_id\": ..., \"reward\": 0..1}", field="body")
    if "event_id" not in body:
        raise InvalidInput("event_id is required", field="event_id")
    signal = body.get("signal")
    if signal is not None and (not isinstance(signal, str) or not SIGNAL.fullmatch(signal)):
        raise InvalidInput(f"signal must match {SIGNAL.pattern}", field="signal")
    return body["event_id"], number(body.get("reward", 1), "reward", 0, 1), signal


def _reward_signal(title_id: str, signal: str | None) -> tuple[str, bool, float, str]:
    """(signal, learn, half-life, aggregation): the signal named (the title's reward signal if
    none), whether the bandit learns from it, the title's half-life and reward aggregation. A
    title no longer in the catalog keeps the defaults."""
    title = current_app.extensions["engine"].catalog.get().get(title_id)
    reward_signal, allowed = (title.reward_signal, title.signals) if title is not None else ("click", ("click", "play"))
    signal = signal or reward_signal
    if signal not in allowed:
        raise InvalidInput(f"signal {signal} is not one of this title's signals: {', '.join(allowed)}", field="signal")
    if title is None:
        return signal, signal == reward_signal, 0.0, "earliest"
    return signal, signal == reward_signal, title.half_life_s, title.reward_aggregation


@bp.post("/reward")
def reward():
    store = current_app.extensions["store"]
    event_id, value, named = parse_reward_body(request.get_data(cache=False))
    title, token = parse_event_id(event_id)
    signal, learn, half_life, aggregation = _reward_signal(title, named)
    try:
        outcome = store.record_reward(title, token, event_id, value, time.time(), signal, learn, half_life, aggregation)
    except STORE_ERRORS as exc:
        current_app.extensions["metrics"].observe_store_error("reward", exc)
        raise StoreUnavailable() from None
    if outcome.status == "unknown":
        raise UnknownEvent("unknown or expired event_id (rewards count only inside the attribution window)", field="event_id")
    if outcome.status == "inactive":
        raise NotActivated("the decision was deferred and is not activated: POST /activate first", field="event_id")
    current_app.extensions["metrics"].observe_reward(title, outcome)
    if not outcome.replicated:
        raise NotReplicated()
    return jsonify({"status": outcome.status})


@bp.post("/activate")
def activate():
    """A deferred decision was displayed: count it (once) and make it learnable and rewardable."""
    body = json_body(request.get_data(cache=False), 'body must be a JSON object {"event_id": ...}')
    if not isinstance(body, dict) or "event_id" not in body:
        raise InvalidInput('body must be a JSON object {"event_id": ...}', field="event_id")
    title, token = parse_event_id(body["event_id"])
    known = current_app.extensions["engine"].catalog.get().get(title)
    try:
        status = current_app.extensions["store"].activate(title, token, time.time(), known.half_life_s if known else 0.0)
    except STORE_ERRORS as exc:
        current_app.extensions["metrics"].observe_store_error("activate", exc)
        raise StoreUnavailable() from None
    if status == "unknown":
        raise UnknownEvent("unknown or expired event_id (activate inside the attribution window)", field="event_id")
    return jsonify({"status": status})
