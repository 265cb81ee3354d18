"""The Personalizer REST surface (a blueprint registered under each supported prefix).

Prefixes: ``/personalizer/v1.0`` (``azure-cognitiveservices-personalizer``),
``/personalizer/v1.1-preview.3`` and ``/personalizer`` with ``?api-version=2022-09-01-preview``
(``azure-ai-personalizer``). Paths, bodies and status codes are the Personalizer REST
specifications'. Every error is a ``PersonalizerError`` (a ``ServiceError``: the app's one error handler answers it)."""

from __future__ import annotations

import hmac
import time
from functools import wraps

import orjson
from flask import Blueprint, Response, current_app, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from bandit.vw_policy import VWConfigError, VWModel
from service.inputs import json_body
from service.personalizer.configuration import DEFAULT_ARGUMENTS, check_policy, iso_time
from service.personalizer.errors import (
    BadRequest,
    Forbidden,
    ServiceUnavailable,
    Unauthorized,
    personalizer_errors,
)
from service.personalizer.parsing import (
    check_event_id,
    parse_multislot_reward,
    parse_rank,
    parse_reward,
)
from service.personalizer.ranker import new_model
from service.redis_conn import STORE_ERRORS

PREFIXES = {"v1_0": "/personalizer/v1.0", "v1_1_preview_3": "/personalizer/v1.1-preview.3", "latest": "/personalizer"}
KEY_HEADER = "Ocp-Apim-Subscription-Key"
MAX_MODEL_BYTES = 64 * 1024 * 1024

bp = Blueprint("personalizer", __name__)


def _ext():
    return current_app.extensions["personalizer"]


def _credentials() -> tuple[bool, bool]:
    """(any credential is configured, this request carries one)."""
    settings = current_app.config["SETTINGS"]
    key, admin = settings.personalizer_api_key, settings.admin_token
    given_key = request.headers.get(KEY_HEADER, "")
    given_auth = request.headers.get("Authorization", "")
    ok = bool(key) and hmac.compare_digest(given_key.encode(), key.encode())
    ok = ok or (bool(admin) and hmac.compare_digest(given_auth.encode(), f"Bearer {admin}".encode()))
    return bool(key or admin), ok


@bp.before_request
def authenticate():
    if current_app.config["SETTINGS"].personalizer_api_key and not _credentials()[1]:
        raise Unauthorized(f"Access denied: a valid {KEY_HEADER} header is required")
    return None


def _require_write():
    configured, ok = _credentials()
    if not configured:
        raise Forbidden("configuration and model writes need PERSONALIZER_API_KEY (or ADMIN_TOKEN) to be set")
    if not ok:
        raise Unauthorized(f"configuration and model writes need the {KEY_HEADER} header (or the admin token)")


def view(fn):
    """Store errors become 503 (the SDKs retry those; every write here is idempotent or a rank
    that a client eventId makes idempotent)."""

    @wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except STORE_ERRORS:
            raise ServiceUnavailable() from None

    return wrapper


def _json_body() -> object:
    """The body through ``service.inputs.json_body`` (the parser of every route: orjson, a depth
    limit, no NaN or out-of-range numbers), its refusals in Personalizer's error format."""
    try:
        data = request.get_data()
    except RequestEntityTooLarge:
        raise BadRequest(f"the body is larger than {current_app.config['MAX_CONTENT_LENGTH']} bytes") from None
    with personalizer_errors():
        return json_body(data, "the body must be JSON (numbers finite and within 64 bits)")


def _no_content() -> Response:
    return Response(status=204)


# ranking and events
@bp.post("/rank")
@view
def rank():
    ext = _ext()
    answer = ext.engine.rank(parse_rank(_json_body()))
    return _created(answer)


@bp.post("/multislot/rank")
@view
def rank_multislot():
    answer = _ext().engine.rank_multislot(parse_rank(_json_body(), multislot=True))
    return _created(answer)


def _created(answer: dict) -> Response:
    return Response(orjson.dumps(answer), status=201, mimetype="application/json")


@bp.post("/events/<path:event_id>/reward")
@view
def reward(event_id: str):
    value = parse_reward(_json_body())
    _ext().store.record_event("reward", check_event_id(event_id), orjson.dumps([[None, value]]).decode())
    return _no_content()


@bp.post("/multislot/events/<path:event_id>/reward")
@view
def reward_multislot(event_id: str):
    rewards = parse_multislot_reward(_json_body())
    _ext().store.record_event("reward", check_event_id(event_id), orjson.dumps(rewards).decode())
    return _no_content()


@bp.post("/events/<path:event_id>/activate")
@bp.post("/multislot/events/<path:event_id>/activate")
@view
def activate(event_id: str):
    _ext().store.record_event("activate", check_event_id(event_id))
    return _no_content()


# configuration
@bp.get("/configurations/service")
@view
def get_service_configuration():
    return jsonify(_ext().store.snapshot().config.to_json())


@bp.put("/configurations/service")
@view
def put_service_configuration():
    _require_write()
    store = _ext().store
    config = store.snapshot().config.updated(_json_body(), time.time())
    store.put_service(config)
    _ext().engine.refresh(force=True)
    return jsonify(config.to_json())


@bp.get("/configurations/policy")
@view
def get_policy():
    return jsonify(_ext().store.policy())


@bp.put("/configurations/policy")
@view
def put_policy():
    _require_write()
    return jsonify(_set_policy(check_policy(_json_body())))


@bp.delete("/configurations/policy")
@view
def reset_policy():
    _require_write()
    return jsonify(_set_policy({"name": "default", "arguments": DEFAULT_ARGUMENTS}))


def _set_policy(policy: dict) -> dict:
    try:
        new_model(policy["arguments"]).close()
    except Exception as exc:  # VW rejects the arguments (its errors are not one class)
        raise BadRequest(f"VW rejects the policy arguments: {str(exc)[:200]}", target="arguments") from None
    store = _ext().store
    store.put_policy(policy)
    store.publish(b"", expected_version=None, source="policy-change")  # new arguments: a new model
    return policy


# model
@bp.get("/model")
@view
def get_model():
    stored = _ext().store.load_model()
    data = stored.data
    if not data:  # no model learned yet: the empty model of the current policy
        model = new_model(_ext().store.policy()["arguments"])
        data = model.to_bytes()
        model.close()
    return Response(data, status=200, mimetype="application/octet-stream")


@bp.put("/model")
@view
def import_model():
    _require_write()
    request.max_content_length = MAX_MODEL_BYTES  # models outgrow MAX_BODY_BYTES quickly
    try:
        data = request.get_data()
    except RequestEntityTooLarge:
        raise BadRequest(f"the model is larger than {MAX_MODEL_BYTES} bytes") from None
    try:
        model = VWModel.from_bytes(data)
    except (VWConfigError, RuntimeError, OSError) as exc:
        raise BadRequest(f"the body is not a VW model: {str(exc)[:200]}") from None
    try:
        if "--cb_explore_adf" not in model.arguments.split() and "cb_explore_adf" not in model.arguments:
            raise BadRequest("the model must be a --cb_explore_adf model")
    finally:
        model.close()
    _ext().store.publish(bytes(data), expected_version=None, source="import")
    return _no_content()


@bp.delete("/model")
@view
def reset_model():
    _require_write()
    _ext().store.publish(b"", expected_version=None, source="reset")
    return _no_content()


@bp.get("/model/properties")
@view
def model_properties():
    stored = _ext().store.load_model()
    created = stored.created or time.time()
    body = {"creationTime": iso_time(created), "lastModifiedTime": iso_time(stored.modified or created)}
    if stored.compared:  # Apprentice mode's report: how often the learned policy picks the baseline
        body["apprenticeAgreement"] = {"events": stored.compared, "agreeing": stored.agree,
                                       "rate": stored.agree / stored.compared}
    return jsonify(body)


# logs
@bp.get("/logs/properties")
@view
def log_properties():
    span = _ext().store.log_range()
    if span is None:
        return jsonify({"dateRange": {}})
    return jsonify({"dateRange": {"from": iso_time(span[0]), "to": iso_time(span[1])}})


@bp.delete("/logs")
@view
def delete_logs():
    _require_write()
    _ext().store.delete_logs()
    return _no_content()


def register(app) -> None:
    for name, prefix in PREFIXES.items():
        app.register_blueprint(bp, url_prefix=prefix, name=f"personalizer_{name}")
