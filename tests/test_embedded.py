"""The embedded fallback (REDIS_EMBEDDED=1: fakeredis with Lua) serves the whole decision cycle."""

from __future__ import annotations

import pytest

TITLE = "stranger-lights"


@pytest.mark.parametrize("batch", [1, 3])
def test_embedded_store_decides_rewards_and_counts(fake_app, batch):
    client = fake_app.test_client()
    for _ in range(2):  # the first request reads counters (two steps), the next uses the one-step path
        body = client.get("/artwork", query_string=[("profile", "p1")] + [("title", TITLE)] * batch).get_json()
    decisions = [body] if batch == 1 else body["decisions"]
    assert all(not d["fallback"] and 0 < d["propensity"] <= 1 for d in decisions)
    statuses = [client.post("/reward", json={"event_id": d["event_id"]}).get_json()["status"] for d in decisions]
    assert statuses == ["recorded"] * batch
    assert client.post("/reward", json={"event_id": decisions[0]["event_id"]}).get_json() == {"status": "duplicate"}
    stats = client.get(f"/stats/{TITLE}").get_json()
    assert (stats["impressions"], stats["rewards"]) == (2 * batch, batch)
