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


# -- one test per class of hostile input found by probing (each a 500 or a silent misread before)

DEEP = b"[" * 20_000 + b"]" * 20_000  # 40 KB: under MAX_BODY_BYTES, deeper than Python's recursion limit
BODY_ROUTES = [("POST", "/reward"), ("POST", "/artwork"), ("PUT", "/catalog/deep-title"), ("PUT", "/profiles/p-deep")]


@pytest.mark.parametrize(("method", "path"), BODY_ROUTES)
@pytest.mark.parametrize("body", [DEEP, b'{"a":' * 5_000 + b"1" + b"}" * 5_000, b'{"event_id": ' + b"[" * 40 + b"]" * 40 + b"}"],
                         ids=["arrays-20k", "objects-5k", "arrays-40"])
def test_deeply_nested_json_is_a_400(client, method, path, body):
    from tests.conftest import ADMIN

    r = client.open(path, method=method, data=body, headers={**ADMIN, "Content-Type": "application/json"})
    assert_error_body(r, {400})


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/reward", b'{"event_id": "stranger-lights~' + b"0" * 32 + b'", "reward": 1' + b"0" * 400 + b"}"),
        ("POST", "/reward", b'{"event_id": "stranger-lights~' + b"0" * 32 + b'", "reward": 1e400}'),
        ("PUT", "/profiles/p-big", b'{"tenure_days": 1' + b"0" * 400 + b"}"),
        ("PUT", "/profiles/p-big", b'{"affinities": {"comedy": -1' + b"0" * 400 + b"}}"),
        ("PUT", "/catalog/big-title", b'{"artworks": [{"id": "a"}], "policy": "ab", "ab": {"weights": {"a": 1' + b"0" * 400 + b"}}}"),
    ],
    ids=["reward-int", "reward-exp", "tenure", "affinity", "ab-weight"],
)
def test_numbers_beyond_float_range_are_a_400(client, method, path, body):
    from tests.conftest import ADMIN

    r = client.open(path, method=method, data=body, headers=ADMIN)
    assert_error_body(r, {400})


def test_huge_python_integers_are_refused_without_overflow():
    """The shared number check compares ints exactly (math.isfinite(10**400) raises OverflowError)."""
    from service.errors import InvalidInput
    from service.inputs import number

    for value in (10**400, -(10**400)):
        with pytest.raises(InvalidInput):
            number(value, "x", 0, 1e9)
    assert number(10**9, "x", 0, 1e9) == 1e9


@pytest.mark.parametrize("value", ["²", "٣", "³", "1٣", "１", "-1", "+3", "24", "3.0", " 3"])
def test_hour_must_be_ascii_digits(client, value):
    r = client.get("/artwork", query_string={"profile": "p1", "title": "stranger-lights", "hour": value})
    assert_error_body(r, {400})
    assert r.get_json()["error"]["field"] == "hour"


def test_ascii_hour_is_accepted(client):
    assert client.get("/artwork", query_string={"profile": "p1", "title": "stranger-lights", "hour": "07"}).status_code == 200


@pytest.mark.parametrize("path", ["/dashboard", "/dashboard/data"])
@pytest.mark.parametrize("value", ["²", "٣", "９"])
def test_dashboard_integers_must_be_ascii_digits(client, path, value):
    assert_error_body(client.get(path, query_string={"minutes": value}), {400})


def test_repeated_profile_is_a_400(client):
    r = client.get("/artwork?profile=p1&profile=p2&title=stranger-lights")
    assert_error_body(r, {400})
    assert r.get_json()["error"]["field"] == "profile"


def _title_state(redis_client, app, title):
    keys = app.extensions["store"].keys
    return redis_client.hgetall(keys.arms(title)), redis_client.xlen(keys.log(title))


def test_head_artwork_records_nothing(app, redis_client):
    client = app.test_client()
    client.get("/artwork?profile=p1&title=stranger-lights")  # counters and log exist
    before = _title_state(redis_client, app, "stranger-lights")
    for _ in range(5):
        r = client.head("/artwork?profile=p1&title=stranger-lights&title=night-shift")
        assert r.status_code == 200 and r.get_data() == b""
    assert _title_state(redis_client, app, "stranger-lights") == before
    assert _title_state(redis_client, app, "night-shift") == ({}, 0)
    assert client.head("/artwork?profile=p1&title=no-such-title").status_code == 404
    assert client.head("/artwork?profile=p1&profile=p2&title=stranger-lights").status_code == 400


def test_post_artwork_is_the_batch_call(app, redis_client):
    client = app.test_client()
    titles = ["night-shift", "stranger-lights", "night-shift"]
    r = client.post("/artwork", json={"profile": "p1", "titles": titles, "context": {"device": "tv", "hour": 7}})
    assert r.status_code == 200
    body = r.get_json()
    assert body["profile"] == "p1" and [d["title"] for d in body["decisions"]] == titles
    assert all(not d["fallback"] and d["event_id"] for d in body["decisions"])
    # logged with its context, and rewardable like a GET decision
    entries = app.extensions["store"].read_log("stranger-lights")
    assert json.loads(entries[-1][1]["record"])["context"] == {"device": "tv", "hour": "7", "segment": "new"}
    assert client.post("/reward", json={"event_id": body["decisions"][1]["event_id"]}).get_json() == {"status": "recorded"}


@pytest.mark.parametrize(
    "body",
    [
        {"titles": ["stranger-lights"]},
        {"profile": "p1"},
        {"profile": "p1", "titles": "stranger-lights"},
        {"profile": "p1", "titles": []},
        {"profile": "p1", "titles": ["stranger-lights"] * 51},
        {"profile": "p1", "titles": [None]},
        {"profile": "p 1", "titles": ["stranger-lights"]},
        {"profile": "p1", "titles": ["stranger-lights"], "context": []},
        {"profile": "p1", "titles": ["stranger-lights"], "context": {"Device": "tv"}},
        {"profile": "p1", "titles": ["stranger-lights"], "context": {"device": ""}},
        {"profile": "p1", "titles": ["stranger-lights"], "context": {"device": 1.5}},
        {"profile": "p1", "titles": ["stranger-lights"], "context": {"device": "tv\n"}},
        {"profile": "p1", "titles": ["stranger-lights"], "context": {"hour": 24}},
        {"profile": "p1", "titles": ["stranger-lights"], "context": {f"k{i}": "v" for i in range(17)}},
        {"profile": "p1", "titles": ["stranger-lights"], "extra": 1},
        ["p1", ["stranger-lights"]],
    ],
)
def test_malformed_post_artwork_is_a_400(client, body):
    assert_error_body(client.post("/artwork", json=body), {400})


def test_post_artwork_unknown_title_is_a_404(client):
    assert_error_body(client.post("/artwork", json={"profile": "p1", "titles": ["no-such-title"]}), {404})
