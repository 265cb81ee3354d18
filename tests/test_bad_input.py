"""Hostile input never produces a 500: always the spec's error body (property tests, real Redis)."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.ids import ID_PATTERN

ANY_TEXT = st.text(min_size=0, max_size=300)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=50),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=10,
)
HYPO = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def assert_error_body(r, statuses):
    assert r.status_code in statuses, (r.status_code, r.get_data()[:200])
    body = r.get_json()
    assert set(body) == {"error"}
    assert isinstance(body["error"]["code"], str) and isinstance(body["error"]["message"], str)
    assert "Traceback" not in r.get_data(as_text=True)


@HYPO
@given(profile=ANY_TEXT, title=ANY_TEXT)
def test_artwork_ids(client, profile, title):
    r = client.get("/artwork", query_string={"profile": profile, "title": title})
    if ID_PATTERN.fullmatch(profile) and title == "stranger-lights":
        assert r.status_code == 200
    elif not ID_PATTERN.fullmatch(profile) or not ID_PATTERN.fullmatch(title):
        assert_error_body(r, {400})
    else:
        assert_error_body(r, {404})


@HYPO
@given(event_id=ANY_TEXT | JSON_VALUES, reward=JSON_VALUES)
def test_reward_bodies(client, event_id, reward):
    r = client.post("/reward", json={"event_id": event_id, "reward": reward})
    assert_error_body(r, {400, 404})


@HYPO
@given(raw=st.binary(max_size=400) | JSON_VALUES.map(lambda v: json.dumps(v).encode()))
def test_raw_reward_bodies(client, raw):
    r = client.post("/reward", data=raw, content_type="text/plain")
    assert_error_body(r, {400, 404})


@HYPO
@given(body=JSON_VALUES, title=ANY_TEXT)
def test_catalog_writes(client, body, title):
    from tests.conftest import ADMIN

    r = client.put(f"/catalog/{title}", data=json.dumps(body), headers=ADMIN)
    if r.status_code not in (200, 201):
        assert_error_body(r, {400, 404, 405})


@HYPO
@given(body=JSON_VALUES)
def test_profile_writes(client, body):
    from tests.conftest import ADMIN

    r = client.put("/profiles/p1", data=json.dumps(body), headers=ADMIN)
    if r.status_code != 200:
        assert_error_body(r, {400})


@pytest.mark.parametrize(
    "event_id",
    [
        "stranger-lights~" + "0" * 32,  # well-formed, never served
        "no-such-title~" + "f" * 32,
        "stranger-lights~" + "G" * 32,  # not hex
        "{stranger-lights}~" + "0" * 32,  # hash-tag injection
        "*~" + "0" * 32,
    ],
)
def test_forged_event_ids_are_rejected(client, event_id):
    r = client.post("/reward", json={"event_id": event_id})
    assert_error_body(r, {400, 404})
