"""Redis outages degrade to fallback answers and recover without a restart."""

from __future__ import annotations

import redis

from tests.conftest import ADMIN

TITLE = "stranger-lights"


def test_outage_fallback_and_recovery(make_app, redis_server_factory):
    server = redis_server_factory()
    app = make_app(redis_url_override=server.url, catalog_refresh_s=0.0)
    client = app.test_client()
    before = client.get(f"/artwork?profile=p1&title={TITLE}").get_json()
    assert before["fallback"] is False

    server.stop()
    down = client.get(f"/artwork?profile=p1&title={TITLE}")
    assert down.status_code == 200
    body = down.get_json()
    default = next(t for t in client.get("/catalog").get_json()["titles"] if t["id"] == TITLE)["default"]
    assert body == {**body, "artwork": default, "fallback": True, "event_id": None, "propensity": None}
    batch = client.get("/artwork", query_string=[("profile", "p1"), ("title", TITLE), ("title", "night-shift")]).get_json()
    assert all(d["fallback"] for d in batch["decisions"])
    r = client.post("/reward", json={"event_id": before["event_id"]})
    assert r.status_code == 503 and r.headers["Retry-After"] == "1"
    assert r.get_json()["error"]["code"] == "store_unavailable"
    assert client.get("/readyz").status_code == 503
    assert client.get(f"/stats/{TITLE}").status_code == 503
    assert client.put("/profiles/p1", json={"segment": "low"}, headers=ADMIN).status_code == 503

    server.start()  # same port, empty data (no persistence): the catalog is seeded again
    after = client.get(f"/artwork?profile=p1&title={TITLE}").get_json()
    assert after["fallback"] is False and after["event_id"]
    assert client.post("/reward", json={"event_id": after["event_id"]}).get_json() == {"status": "recorded"}
    assert client.get("/readyz").status_code == 200


def test_starts_with_redis_down_and_serves_fallbacks(make_app, redis_server_factory):
    server = redis_server_factory()
    server.stop()
    client = make_app(redis_url_override=server.url, catalog_refresh_s=0.0).test_client()
    d = client.get(f"/artwork?profile=p1&title={TITLE}").get_json()
    assert d["fallback"] is True
    server.start()
    assert client.get(f"/artwork?profile=p1&title={TITLE}").get_json()["fallback"] is False


def test_readyz_is_not_ready_while_redis_refuses_writes(make_app, redis_server_factory):
    """A Redis at maxmemory (noeviction) answers PING but refuses every decision: not ready, and
    the body says why; ready again once memory is freed."""
    server = redis_server_factory("--maxmemory-policy", "noeviction")
    app = make_app(redis_url_override=server.url)
    client = app.test_client()
    assert client.get("/readyz").get_json() == {"status": "ready", "checks": {"redis": True, "writable": True, "catalog": True}}
    admin = redis.Redis.from_url(server.url)
    admin.set("ballast", b"x" * 512 * 1024)
    admin.config_set("maxmemory", int(admin.info("memory")["used_memory"]) - 256 * 1024)  # now above it
    assert client.get(f"/artwork?profile=p1&title={TITLE}").get_json()["fallback"] is True
    r = client.get("/readyz")
    assert r.status_code == 503
    body = r.get_json()
    assert body["checks"] == {"redis": True, "writable": False, "catalog": True}
    assert body["status"] == "not_ready" and "OOM" in body["reason"] and "out of memory" in body["reason"]
    admin.delete("ballast")
    assert client.get("/readyz").status_code == 200
