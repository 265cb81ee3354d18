"""``GET /explain`` on a real Redis: the propensities it shows are the ones decisions log."""

from __future__ import annotations

import pytest

from tests.conftest import ADMIN, client_for
from tests.test_signals import TITLE, put_title
from tests.test_vw_service import sim_world  # noqa: F401 - the fixture


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


def test_explain_of_a_vw_title_gives_the_models_pmf_that_decisions_log(make_app, redis_url, key_prefix, sim_world):  # noqa: F811
    import numpy as np

    from bandit.vw_policy import VWModel
    from replay.simulation import personalized as sim
    from replay.simulation.online import run_online
    from replay.simulation.vw import VWOnline
    from service.keys import Keys
    from service.models import ModelStore
    from tests.test_vw_service import FAST, setup_catalog
    from tests.test_vw_service import TITLE as VW_TITLE

    profiles, traffic = sim_world
    client = make_app(**FAST).test_client()
    setup_catalog(client, profiles[:5])
    before = client.get(f"/explain?profile={profiles[0].id}&title={VW_TITLE}&device=tv").get_json()  # no model yet
    assert before["model_version"] == 0
    assert all(r["vw_score"] is None and r["vw_contributions"] == [] for r in before["artworks"])
    model = VWModel.new()
    run_online(VWOnline(sim.artwork_ids(), sim.artwork_tags(), model=model), sim.impressions(profiles, traffic), np.random.default_rng(0))
    data = model.to_bytes()
    version = ModelStore(client_for(redis_url), Keys(key_prefix)).publish(
        VW_TITLE, data, position="0-0", learned=0, digest=0, expected_version=None
    )
    model.close()
    client.application.extensions["engine"].models.observe({VW_TITLE: version}, wait=True)
    p = profiles[0].id
    ex = client.get(f"/explain?profile={p}&title={VW_TITLE}&device=tv").get_json()
    assert ex["policy"] == "vw" and ex["model_version"] == version and ex["vw_features"]["device"] == "tv"
    pmf = {r["artwork"]: r["propensity"] for r in ex["artworks"]}
    assert sum(pmf.values()) == pytest.approx(1.0) and max(pmf.values()) > 0.5  # a trained model, not uniform
    for _ in range(5):
        d = client.get(f"/artwork?profile={p}&title={VW_TITLE}&device=tv").get_json()
        assert d["propensity"] == pytest.approx(pmf[d["artwork"]], abs=1e-9)
    # each artwork's score is VW's own for this example; its contributions carry the example's feature names
    from bandit.vw_features import to_example

    example = to_example(ex["vw_features"], [r["artwork"] for r in ex["artworks"]])
    published = VWModel.from_bytes(data)
    try:
        vw_scores = published.scores(example.lines())
    finally:
        published.close()
    tokens = {f"{part.split()[0]}^{f.partition(':')[0]}" for line in (example.shared, *example.actions)
              for part in line.split("|")[1:] for f in part.split()[1:]}
    for r, s in zip(ex["artworks"], vw_scores, strict=True):
        assert r["vw_score"] == pytest.approx(s, abs=1e-5)
        top = r["vw_contributions"]
        assert 0 < len(top) <= 5 and any(c["feature"] == f"A^art={r['artwork']}" or "*A^" in c["feature"] for c in top)
        for c in top:
            assert c["contribution"] == pytest.approx(c["value"] * c["weight"])
            assert c["feature"] == "Constant" or all(part in tokens for part in c["feature"].split("*")), c["feature"]
    best_scored = max(ex["artworks"], key=lambda r: r["vw_score"])
    assert best_scored["propensity"] == max(pmf.values())
