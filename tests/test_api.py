"""HTTP contract of the service against a real Redis (SPEC: /artwork, /reward, catalog, CORS)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import ADMIN

TITLE = "stranger-lights"


def put_title(client, title_id, artworks=("a1", "a2"), policy="thompson", **extra):
    body = {"artworks": [{"id": a, "tags": ["t"]} for a in artworks], "default": artworks[0], "policy": policy, **extra}
    return client.put(f"/catalog/{title_id}", json=body, headers=ADMIN)


def test_single_title_answer_has_the_spec_fields(client):
    r = client.get(f"/artwork?profile=p1&title={TITLE}")
    assert r.status_code == 200
    body = r.get_json()
    assert set(body) == {"profile", "title", "artwork", "event_id", "propensity", "policy", "fallback"}
    assert body["fallback"] is False and body["policy"] == "thompson"
    assert 0 < body["propensity"] <= 1
    assert body["artwork"] in {a["id"] for a in client.get(f"/catalog/{TITLE}").get_json()["artworks"]}
    assert r.headers["Cache-Control"] == "no-store"


def test_batch_answers_in_request_order(client):
    titles = ["night-shift", TITLE, "tiny-detectives", TITLE]
    r = client.get("/artwork", query_string=[("profile", "p9")] + [("title", t) for t in titles])
    body = r.get_json()
    assert r.status_code == 200 and body["profile"] == "p9"
    assert [d["title"] for d in body["decisions"]] == titles
    assert len({d["event_id"] for d in body["decisions"]}) == 4


def test_fixed_policy_serves_the_default_with_propensity_one(client):
    put_title(client, "pinned", ("x1", "x2", "x3"), policy="fixed", default="x2")
    for _ in range(5):
        d = client.get("/artwork?profile=p&title=pinned").get_json()
        assert (d["artwork"], d["propensity"], d["policy"]) == ("x2", 1.0, "fixed")


def test_ab_policy_is_deterministic_per_profile_and_logs_the_weight(client):
    put_title(client, "split", ("x1", "x2"), policy="ab", ab={"salt": "exp1", "weights": {"x1": 0.25, "x2": 0.75}})
    seen = {}
    for i in range(200):
        d = client.get(f"/artwork?profile=u{i % 50}&title=split").get_json()
        seen.setdefault(d["profile"], set()).add(d["artwork"])
        assert d["propensity"] == {"x1": 0.25, "x2": 0.75}[d["artwork"]]
    assert all(len(v) == 1 for v in seen.values())


def test_reward_recorded_then_duplicate_and_counted_once(client):
    d = client.get(f"/artwork?profile=p1&title={TITLE}").get_json()
    assert client.post("/reward", json={"event_id": d["event_id"], "reward": 0.5}).get_json() == {"status": "recorded"}
    assert client.post("/reward", json={"event_id": d["event_id"]}).get_json() == {"status": "duplicate"}
    stats = client.get(f"/stats/{TITLE}").get_json()
    row = next(a for a in stats["artworks"] if a["artwork"] == d["artwork"])
    assert (row["impressions"], row["rewards"], row["reward_sum"]) == (1, 1, 0.5)
    assert stats["segments"]["new"]


def test_reward_accepts_text_plain_as_sent_by_send_beacon(client):
    d = client.get(f"/artwork?profile=p1&title={TITLE}").get_json()
    r = client.post("/reward", data=json.dumps({"event_id": d["event_id"]}), content_type="text/plain;charset=UTF-8")
    assert r.status_code == 200 and r.get_json()["status"] == "recorded"


def test_reward_for_unknown_event_is_404(client):
    r = client.post("/reward", json={"event_id": f"{TITLE}~{'0' * 32}"})
    assert r.status_code == 404 and r.get_json()["error"]["code"] == "unknown_event"


def test_reward_after_the_attribution_window_is_404(make_app, redis_client, key_prefix):
    app = make_app(attribution_window_s=1)
    client = app.test_client()
    d = client.get(f"/artwork?profile=p1&title={TITLE}").get_json()
    title, token = d["event_id"].rsplit("~", 1)
    # Expire the pending decision as the window's end would.
    redis_client.pexpire(app.extensions["store"].keys.pending(title, token), 1)
    import time

    time.sleep(0.01)
    assert client.post("/reward", json={"event_id": d["event_id"]}).status_code == 404


@pytest.mark.parametrize(
    "query,status,field",
    [
        ("title=stranger-lights", 400, "profile"),
        ("profile=p1", 400, "title"),
        ("profile=&title=stranger-lights", 400, "profile"),
        ("profile=p%20x&title=stranger-lights", 400, "profile"),
        ("profile=p1&title=no-such-title", 404, "title"),
        ("profile=p1&title=stranger-lights&hour=24", 400, "hour"),
    ],
)
def test_artwork_bad_input(client, query, status, field):
    r = client.get(f"/artwork?{query}")
    assert r.status_code == status
    assert r.get_json()["error"]["field"] == field


def test_catalog_round_trip_and_admin_auth(client):
    body = {"artworks": [{"id": "a1", "tags": ["closeup-lead", "dark"]}, {"id": "a2", "tags": ["ensemble"]}], "default": "a1", "policy": "thompson"}
    assert client.put("/catalog/newtitle", json=body).status_code == 401
    assert client.put("/catalog/newtitle", json=body, headers={"Authorization": "Bearer wrong"}).status_code == 403
    r = client.put("/catalog/newtitle", json=body, headers=ADMIN)
    assert r.status_code == 201
    listed = {t["id"]: t for t in client.get("/catalog").get_json()["titles"]}
    assert listed["newtitle"] == {"id": "newtitle", **body}
    assert client.get("/artwork?profile=p&title=newtitle").status_code == 200
    assert client.delete("/catalog/newtitle", headers=ADMIN).status_code == 200
    assert client.get("/artwork?profile=p&title=newtitle").status_code == 404
    assert client.delete("/catalog/newtitle", headers=ADMIN).status_code == 404


def test_admin_writes_disabled_without_a_token(make_app):
    client = make_app(admin_token="").test_client()
    r = client.put("/profiles/p1", json={"segment": "power"}, headers=ADMIN)
    assert r.status_code == 403


def test_admin_write_reaches_another_worker(make_app):
    writer = make_app().test_client()
    reader_app = make_app(catalog_refresh_s=0.0)
    reader = reader_app.test_client()
    assert reader.get("/artwork?profile=p&title=brand-new").status_code == 404
    put_title(writer, "brand-new", ("b1", "b2"), policy="fixed")
    d = reader.get("/artwork?profile=p&title=brand-new").get_json()
    assert d["artwork"] == "b1" and d["policy"] == "fixed"


def test_catalog_cache_checks_the_version_at_the_configured_interval(app):
    cache = app.extensions["engine"].catalog
    now = [1000.0]
    cache.clock = lambda: now[0]
    cache.refresh()
    calls = []
    original = cache.store.catalog_version
    cache.store.catalog_version = lambda: calls.append(1) or original()
    cache.get()
    now[0] += cache.refresh_s / 2
    cache.get()
    assert calls == []
    now[0] += cache.refresh_s
    cache.get()
    assert calls == [1]


def test_profiles_set_the_segment(client):
    r = client.put("/profiles/fan1", json={"tenure_days": 420, "weekly_hours": 11.5, "affinities": {"comedy": 0.8}}, headers=ADMIN)
    assert r.status_code == 200 and r.get_json()["derived_segment"] == "power"
    client.get(f"/artwork?profile=fan1&title={TITLE}")
    assert "power" in client.get(f"/stats/{TITLE}").get_json()["segments"]
    bad = client.put("/profiles/fan1", json={"segment": "vip"}, headers=ADMIN)
    assert bad.status_code == 400 and bad.get_json()["error"]["field"] == "segment"


@pytest.mark.parametrize("path,method", [("/artwork", "GET"), ("/reward", "POST")])
def test_cors_preflight(client, path, method):
    r = client.options(path, headers={"Origin": "https://app.example", "Access-Control-Request-Method": method, "Access-Control-Request-Headers": "content-type"})
    assert r.status_code == 200
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    assert method in r.headers["Access-Control-Allow-Methods"]
    assert r.headers["Access-Control-Allow-Headers"] == "content-type"


def test_cors_restricted_origins(make_app):
    client = make_app(cors_origins=("https://good.example",)).test_client()
    ok = client.get(f"/artwork?profile=p&title={TITLE}", headers={"Origin": "https://good.example"})
    assert ok.headers["Access-Control-Allow-Origin"] == "https://good.example"
    bad = client.get(f"/artwork?profile=p&title={TITLE}", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in bad.headers


def test_health_readiness_openapi(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    assert client.get("/readyz").get_json()["status"] == "ready"
    doc = client.get("/openapi.json").get_json()
    assert doc["openapi"].startswith("3.") and "/artwork" in doc["paths"]


def test_body_size_is_limited(make_app):
    client = make_app(max_body_bytes=1024).test_client()
    r = client.post("/reward", data="x" * 5000, content_type="application/json")
    assert r.status_code == 413 and r.get_json()["error"]["code"] == "body_too_large"


def test_unknown_route_and_method_are_json(client):
    assert client.get("/nope").get_json()["error"]["code"] == "not_found"
    r = client.delete("/artwork")
    assert r.status_code == 405 and r.get_json()["error"]["code"] == "method_not_allowed"
