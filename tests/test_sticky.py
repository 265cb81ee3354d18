"""Sticky artwork on a real Redis: a profile keeps its first decision's artwork for the title's
period across workers; repeats are logged with that decision's propensity and ``repeat_of``."""

from __future__ import annotations

import json

from tests.conftest import ADMIN

TITLE = "sticky-title"
ARTS = ("a1", "a2", "a3", "a4")


def put_title(client, sticky_s):
    body = {"artworks": [{"id": a} for a in ARTS], "sticky_s": sticky_s}
    r = client.put(f"/catalog/{TITLE}", json=body, headers=ADMIN)
    assert r.status_code in (200, 201), r.get_json()


def serve(workers, n):
    return [workers[i % len(workers)].get(f"/artwork?profile=m1&title={TITLE}&device=tv").get_json() for i in range(n)]


def test_a_profile_keeps_its_artwork_for_the_period_across_workers(make_app):
    workers = [make_app(rng_seed=seed, catalog_refresh_s=0.0).test_client() for seed in range(3)]
    put_title(workers[0], 600)
    answers = serve(workers, 24)
    first = answers[0]
    assert {a["artwork"] for a in answers} == {first["artwork"]}
    assert {a["propensity"] for a in answers} == {first["propensity"]}  # no new propensity claim
    assert len({a["event_id"] for a in answers}) == 24  # each impression its own event (rewards)
    store = workers[0].application.extensions["store"]
    records = [json.loads(f[b"record"]) for _, f in store.client.xrange(store.keys.log(TITLE)) if f[b"type"] == b"decision"]
    assert "repeat_of" not in records[0]["context"]
    assert all(r["context"] == {"device": "tv", "repeat_of": first["event_id"], "segment": "new"} for r in records[1:])
    stats = workers[0].get(f"/stats/{TITLE}").get_json()
    assert stats["impressions"] == 24  # repeats are impressions
    # another profile is randomized on its own
    other = workers[1].get(f"/artwork?profile=m2&title={TITLE}").get_json()
    assert "repeat_of" not in json.loads(store.client.xrevrange(store.keys.log(TITLE), count=1)[0][1][b"record"])["context"]
    assert other["event_id"] != first["event_id"]


def test_without_sticky_s_the_same_profile_sees_several_artworks(make_app):
    workers = [make_app(rng_seed=seed, catalog_refresh_s=0.0).test_client() for seed in range(3)]
    put_title(workers[0], 0)
    assert len({a["artwork"] for a in serve(workers, 24)}) > 1


def test_the_period_expires(make_app, redis_client):
    worker = make_app(catalog_refresh_s=0.0).test_client()
    put_title(worker, 600)
    first = serve([worker], 1)[0]
    store = worker.application.extensions["store"]
    assert 590 <= store.client.ttl(store.keys.sticky(TITLE, "m1")) <= 600
    store.client.delete(store.keys.sticky(TITLE, "m1"))  # what expiry does
    again = serve([worker], 1)[0]
    assert "repeat_of" not in json.loads(store.client.xrevrange(store.keys.log(TITLE), count=1)[0][1][b"record"])["context"]
    assert again["event_id"] != first["event_id"]


def test_a_bad_sticky_s_is_a_400_naming_it(client):
    for value in (-1, 1.5, "60", True, 31 * 86_400):
        r = client.put(f"/catalog/{TITLE}", json={"artworks": [{"id": "a1"}], "sticky_s": value}, headers=ADMIN)
        assert r.status_code == 400 and r.get_json()["error"]["field"] == "sticky_s"


def test_a_sticky_request_takes_two_round_trips(make_app):
    """The remembered decision rides with the profile read: read, then the decide script."""
    from tests.test_store import CountingClient

    worker = make_app(catalog_refresh_s=60.0, stats_cache_s=60.0).test_client()
    put_title(worker, 600)
    serve([worker], 2)  # counters cached, first decision remembered
    store = worker.application.extensions["store"]
    counting = CountingClient(store.client)
    store.client = counting
    try:
        serve([worker], 1)
    finally:
        store.client = counting._client
    assert counting.round_trips == 2
