"""Catalog and profile management: ``/catalog`` and ``PUT /profiles/<id>``.

Writes need ``Authorization: Bearer $ADMIN_TOKEN`` (401 without a bearer token, 403 with a wrong
one or when no token is configured), compared in constant time.
"""

from __future__ import annotations

import hmac
import json

from flask import Blueprint, current_app, jsonify, request

from service.catalog import parse_profile, parse_title
from service.errors import Forbidden, InvalidInput, NotFound, StoreUnavailable, Unauthorized
from service.ids import check_id
from service.redis_conn import STORE_ERRORS

bp = Blueprint("admin", __name__)


def require_admin() -> None:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("admin writes need 'Authorization: Bearer <token>'", headers={"WWW-Authenticate": "Bearer"})
    expected = current_app.config["SETTINGS"].admin_token
    if not expected:
        raise Forbidden("admin writes are disabled: ADMIN_TOKEN is not set")
    if not hmac.compare_digest(token.strip().encode(), expected.encode()):
        raise Forbidden("invalid admin token")


def json_body() -> object:
    try:
        return json.loads(request.get_data(cache=False))
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("body must be JSON", field="body") from None


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
    title = parse_title(check_id(title_id, "title"), json_body())
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
    profile = parse_profile(json_body())
    try:
        current_app.extensions["store"].put_profile(profile_id, profile)
    except STORE_ERRORS:
        raise StoreUnavailable() from None
    return jsonify({"id": profile_id, **profile.to_json(), "derived_segment": profile.derived_segment})


@bp.get("/profiles/<profile_id>")
def get_profile(profile_id: str):
    check_id(profile_id, "profile")
    try:
        profile = current_app.extensions["store"].get_profile(profile_id)
    except STORE_ERRORS:
        raise StoreUnavailable() from None
    if profile is None:
        raise NotFound(f"unknown profile: {profile_id}", field="profile")
    return jsonify({"id": profile_id, **profile.to_json(), "derived_segment": profile.derived_segment})
