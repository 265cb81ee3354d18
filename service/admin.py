"""Catalog and profile management: ``/catalog`` and ``PUT /profiles/<id>``.

Writes need ``Authorization: Bearer $ADMIN_TOKEN`` (401 without a bearer token, 403 with a wrong
one or when no token is configured), compared in constant time.
"""

from __future__ import annotations

import hmac

from flask import Blueprint, current_app, jsonify, request

from service.catalog import parse_profile, parse_title
from service.errors import Forbidden, NotFound, StoreUnavailable, Unauthorized
from service.ids import check_id
from service.inputs import json_body
from service.redis_conn import STORE_ERRORS

bp = Blueprint("admin", __name__)


def _bearer_token(what: str) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized(f"{what} need 'Authorization: Bearer <token>'", headers={"WWW-Authenticate": "Bearer"})
    return token.strip()


def require_admin() -> None:
    token = _bearer_token("admin calls")
    expected = current_app.config["SETTINGS"].admin_token
    if not expected:
        raise Forbidden("admin calls are disabled: ADMIN_TOKEN is not set")
    if not hmac.compare_digest(token.encode(), expected.encode()):
        raise Forbidden("invalid admin token")


def require_ops_reader() -> None:
    """Ops reads are open unless OPS_TOKEN is set; then its token or the admin token is needed.

    The dashboard page cannot set a header on its own navigation, so ``?token=`` works there too.
    """
    settings = current_app.config["SETTINGS"]
    if not settings.ops_token:
        return
    token = request.args.get("token") if request.path.startswith("/dashboard") else None
    token = token or _bearer_token("ops reads")
    # Both compared, always: the time taken does not tell which token was close.
    ok_ops = hmac.compare_digest(token.encode(), settings.ops_token.encode())
    ok_admin = bool(settings.admin_token) & hmac.compare_digest(token.encode(), settings.admin_token.encode())
    if not (ok_ops or ok_admin):
        raise Forbidden("invalid ops token")


@bp.get("/catalog")
def get_catalog():
    titles = current_app.extensions["engine"].catalog.get()
    return jsonify({"titles": [titles[t].to_json() for t in sorted(titles)]})


@bp.get("/catalog/<title_id>")
def get_title(title_id: str):
    check_id(title_id, "title")
    title = current_app.extensions["engine"].catalog.get().get(title_id)
    if title is None:
        raise NotFound(f"unknown title: {title_id}", field="title")
    return jsonify(title.to_json())


@bp.put("/catalog/<title_id>")
def put_title(title_id: str):
    require_admin()
    title = parse_title(check_id(title_id, "title"), json_body(request.get_data(cache=False)))
    engine = current_app.extensions["engine"]
    try:
        created = engine.store.put_title(title)
    except STORE_ERRORS:
        raise StoreUnavailable() from None
    engine.catalog.invalidate()
    engine.counts.clear(title.id)
    return jsonify(title.to_json()), (201 if created else 200)


@bp.delete("/catalog/<title_id>")
def delete_title(title_id: str):
    require_admin()
    check_id(title_id, "title")
    engine = current_app.extensions["engine"]
    try:
        deleted = engine.store.delete_title(title_id)
    except STORE_ERRORS:
        raise StoreUnavailable() from None
    if not deleted:
        raise NotFound(f"unknown title: {title_id}", field="title")
    engine.catalog.invalidate()
    return jsonify({"status": "deleted", "id": title_id})


@bp.put("/profiles/<profile_id>")
def put_profile(profile_id: str):
    require_admin()
    check_id(profile_id, "profile")
    profile = parse_profile(json_body(request.get_data(cache=False)))
    try:
        current_app.extensions["store"].put_profile(profile_id, profile)
    except STORE_ERRORS:
        raise StoreUnavailable() from None
    return jsonify({"id": profile_id, **profile.to_json(), "derived_segment": profile.derived_segment})


@bp.get("/profiles/<profile_id>")
def get_profile(profile_id: str):
    require_admin()  # a profile's segment, tenure and affinities are personal data
    check_id(profile_id, "profile")
    try:
        profile = current_app.extensions["store"].get_profile(profile_id)
    except STORE_ERRORS:
        raise StoreUnavailable() from None
    if profile is None:
        raise NotFound(f"unknown profile: {profile_id}", field="profile")
    return jsonify({"id": profile_id, **profile.to_json(), "derived_segment": profile.derived_segment})
