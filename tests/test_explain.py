"""``GET /explain`` on a real Redis: the propensities it shows are the ones decisions log."""

from __future__ import annotations

import pytest

from tests.conftest import ADMIN
from tests.test_signals import TITLE, put_title


def test_explain_propensity_is_the_distribution_decisions_draw_and_log(make_app):
    """With the same counters, /explain's propensities are what a decision logs, and the
    propensities sum to one, mixing the probability of being best as the sampler does."""
    app = make_app()
    client = app.test_client()
    put_title(client, artworks=("a1", "a2", "a3"))
    assert client.put("/profiles/pe", json={"segment": "power", "weekly_hours": 12}, headers=ADMIN).status_code in (200, 201, 204)
    for i in range(60):  # counters with a clear leader: a2 clicked most
        d = client.get(f"/artwork?profile=w{i}&title={TITLE}").get_json()
        if d["artwork"] == "a2" or i % 4 == 0:
            client.post("/reward", json={"event_id": d["event_id"]})
    for seed in range(15):
        ex = client.get(f"/explain?profile=pe&title={TITLE}", headers=ADMIN).get_json()
        worker = make_app(rng_seed=seed).test_client()  # no cached counters: reads what explain read
        d = worker.get(f"/artwork?profile=pe&title={TITLE}").get_json()
        rows = {r["artwork"]: r for r in ex["artworks"]}
        assert d["propensity"] == pytest.approx(rows[d["artwork"]]["propensity"], rel=1e-12)
    assert (ex["segment"], ex["policy"], ex["features"]["weekly_hours"]) == ("power", "thompson", 12)
    assert sum(r["probability_best"] for r in ex["artworks"]) == pytest.approx(1.0)
    mix = app.config["SETTINGS"].ts_uniform_mix
    for r in ex["artworks"]:
        assert r["propensity"] == pytest.approx((1 - mix) * r["probability_best"] + mix / 3)
        assert r["ci95"][0] < r["posterior_mean"] < r["ci95"][1]
