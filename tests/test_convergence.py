"""Thompson sampling through the whole service learns the better artwork (real Redis)."""

from __future__ import annotations

import numpy as np

from tests.conftest import ADMIN

TRUE_CTR = {"art-24": 0.24, "art-30": 0.30}


def test_ts_converges_to_the_30_percent_artwork(make_app):
    # Counters re-read every request so that the run is independent of wall-clock timing.
    app = make_app(stats_cache_s=0.0, rng_seed=2024)
    client = app.test_client()
    body = {"artworks": [{"id": a, "tags": []} for a in TRUE_CTR], "default": "art-24", "policy": "thompson"}
    assert client.put("/catalog/classic", json=body, headers=ADMIN).status_code == 201
    clicks = np.random.default_rng(99)
    served = []
    for i in range(5_000):
        d = client.get(f"/artwork?profile=p{i % 500}&title=classic").get_json()
        assert not d["fallback"]
        served.append(d["artwork"])
        if clicks.random() < TRUE_CTR[d["artwork"]]:
            assert client.post("/reward", json={"event_id": d["event_id"]}).get_json()["status"] == "recorded"
    share_best = served[-1000:].count("art-30") / 1000
    assert share_best >= 0.85, share_best
    stats = client.get("/stats/classic").get_json()
    assert stats["impressions"] == 5_000
