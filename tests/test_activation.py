"""Deferred activation of ``/artwork`` decisions (``defer_activation``, ``POST /activate``) on a
real Redis: a deferred decision counts, is logged and takes a reward only once activated, once."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

TITLE = "stranger-lights"



@pytest.fixture
def app(make_app):
    return make_app(stats_cache_s=0.0)  # /stats read fresh after each call

def _stats(client) -> tuple[int, int]:
    body = client.get(f"/stats/{TITLE}").get_json()
    return body["impressions"], body["rewards"]


def _logged_decisions(app) -> list[str]:
    store = app.extensions["store"]
    entries = store.client.xrange(store.keys.log(TITLE), count=100_000)
    return [json.loads(f[b"record"])["event_id"] for _, f in entries if f[b"type"] == b"decision"]


def test_a_deferred_decision_counts_only_once_activated(app, client):
    from service.fast_path import ArtworkFastPath

    assert isinstance(app.wsgi_app, ArtworkFastPath)  # GET /artwork here goes through the lean front
    before = _stats(client)
    d = client.get(f"/artwork?profile=p1&title={TITLE}&device=tv&defer_activation=1").get_json()
    assert d["fallback"] is False and d["event_id"]
    assert _stats(client) == before and d["event_id"] not in _logged_decisions(app)
    r = client.post("/reward", json={"event_id": d["event_id"], "reward": 1})
    assert r.status_code == 409 and r.get_json()["error"]["code"] == "not_activated"

    assert client.post("/activate", json={"event_id": d["event_id"]}).get_json() == {"status": "activated"}
    assert _stats(client) == (before[0] + 1, before[1])
    logged = [e for e in _logged_decisions(app) if e == d["event_id"]]
    assert logged == [d["event_id"]]
    store = app.extensions["store"]
    last = json.loads(store.client.xrevrange(store.keys.log(TITLE), count=1)[0][1][b"record"])
    # the record as a non-deferred decision's: the served artwork, propensity and context
    assert (last["artwork"], last["propensity"], last["context"]["device"]) == (d["artwork"], d["propensity"], "tv")
    # idempotent: a repeat changes nothing
    assert client.post("/activate", json={"event_id": d["event_id"]}).get_json() == {"status": "duplicate"}
    assert _stats(client) == (before[0] + 1, before[1])
    assert client.post("/reward", json={"event_id": d["event_id"]}).get_json() == {"status": "recorded"}
    assert _stats(client) == (before[0] + 1, before[1] + 1)


def test_non_deferred_decisions_are_unchanged_and_activate_is_a_duplicate(client):
    before = _stats(client)
    d = client.get(f"/artwork?profile=p1&title={TITLE}&defer_activation=0").get_json()
    assert _stats(client) == (before[0] + 1, before[1])
    assert client.post("/activate", json={"event_id": d["event_id"]}).get_json() == {"status": "duplicate"}
    assert _stats(client) == (before[0] + 1, before[1])


def test_batch_body_defers_every_decision(app, client):
    before = _stats(client)
    body = client.post("/artwork", json={"profile": "p2", "titles": [TITLE, TITLE], "defer_activation": True}).get_json()
    events = [d["event_id"] for d in body["decisions"]]
    assert _stats(client) == before
    for e in events:
        assert client.post("/activate", json={"event_id": e}).get_json() == {"status": "activated"}
    assert _stats(client) == (before[0] + 2, before[1])


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        ("get:defer_activation=yes", "defer_activation"),
        ("get:defer_activation=1&defer_activation=1", "defer_activation"),
        ("post:", "defer_activation"),
    ],
)
def test_bad_defer_activation_is_a_400(client, request_, field):
    method, query = request_.split(":", 1)
    if method == "get":
        r = client.get(f"/artwork?profile=p1&title={TITLE}&{query}")
    else:
        r = client.post("/artwork", json={"profile": "p1", "titles": [TITLE], "defer_activation": 1})
    assert r.status_code == 400 and r.get_json()["error"]["field"] == field


@pytest.mark.parametrize("body", [b"", b"[]", b'{"event_id": 3}', b'{"event_id": "nope"}', b"{}"])
def test_bad_activate_bodies_are_400(client, body):
    r = client.post("/activate", data=body)
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "invalid_input"


def test_unknown_or_expired_events_are_404(make_app):
    client = make_app(attribution_window_s=1).test_client()
    assert client.post("/activate", json={"event_id": f"{TITLE}~{'0' * 32}"}).status_code == 404
    d = client.get(f"/artwork?profile=p1&title={TITLE}&defer_activation=1").get_json()
    app = client.application
    store = app.extensions["store"]
    store.client.delete(store.keys.pending(TITLE, d["event_id"].rsplit("~", 1)[1]))  # what the window's TTL does
    r = client.post("/activate", json={"event_id": d["event_id"]})
    assert r.status_code == 404 and r.get_json()["error"]["code"] == "unknown_event"


def test_concurrent_activations_count_once(app, client):
    events = [d["event_id"] for d in client.get(
        "/artwork", query_string=[("profile", "p3"), ("defer_activation", "1")] + [("title", TITLE)] * 50
    ).get_json()["decisions"]]
    before = _stats(client)

    def send(offset: int) -> list[str]:
        c = app.test_client()
        return [c.post("/activate", json={"event_id": e}).get_json()["status"] for e in events[offset:] + events[:offset]]

    with ThreadPoolExecutor(4) as pool:
        statuses = [s for chunk in pool.map(send, [0, 12, 25, 37]) for s in chunk]
    assert statuses.count("activated") == 50 and statuses.count("duplicate") == 150
    assert _stats(client) == (before[0] + 50, before[1])
    assert sorted(e for e in _logged_decisions(app) if e in set(events)) == sorted(events)


def test_activate_answers_503_while_redis_is_down(make_app, redis_server_factory):
    server = redis_server_factory()
    client = make_app(redis_url_override=server.url).test_client()
    d = client.get(f"/artwork?profile=p1&title={TITLE}&defer_activation=1").get_json()
    server.stop()
    r = client.post("/activate", json={"event_id": d["event_id"]})
    assert r.status_code == 503 and r.headers["Retry-After"] == "1"
    assert r.get_json()["error"]["code"] == "store_unavailable"


def test_activation_counts_a_decaying_impression_and_a_deferred_decision_is_not_remembered_as_sticky(app, client):
    from tests.conftest import ADMIN

    body = {"artworks": [{"id": "a"}, {"id": "b"}], "policy": "thompson", "half_life_s": 3600, "sticky_s": 600}
    assert client.put("/catalog/decay-sticky", json=body, headers=ADMIN).status_code == 201
    d = client.get("/artwork?profile=s1&title=decay-sticky&defer_activation=1").get_json()
    store = app.extensions["store"]
    arms = lambda: {k.decode(): float(v) for k, v in store.client.hgetall(store.keys.arms("decay-sticky")).items()}  # noqa: E731
    assert not any(k.startswith(("n|", "dn|")) for k in arms())
    assert client.post("/activate", json={"event_id": d["event_id"]}).get_json() == {"status": "activated"}
    counted = {k: v for k, v in arms().items() if k != "e"}  # (e: the decay epoch, the decision's time)
    assert counted == {f"n|new|{d['artwork']}": 1, f"dn|new|{d['artwork']}": 1.0}  # one increment: the segment's
    seg = store.read_counts(["decay-sticky"])["decay-sticky"]
    assert seg.impressions == {d["artwork"]: 1} and seg.growth == {f"dn|new|{d['artwork']}": 1.0}  # first impression: weight 1
    # the deferred decision was not remembered: the next decision is a first one, not a repeat of it
    store_log = [json.loads(f["record"]) for _, f in store.read_log("decay-sticky") if f["type"] == "decision"]
    assert all("repeat_of" not in r["context"] for r in store_log)
    nxt = client.get("/artwork?profile=s1&title=decay-sticky").get_json()
    record = json.loads(store.client.xrevrange(store.keys.log("decay-sticky"), count=1)[0][1][b"record"])
    assert record["event_id"] == nxt["event_id"] and "repeat_of" not in record["context"]
