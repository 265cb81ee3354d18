"""Counters that forget, on a real Redis: the decayed sums the decide and reward scripts keep
equal the closed form sum_i v_i 2^(-(now - t_i) / h) of the logged sequence, rebase included."""

from __future__ import annotations

import json
import time

import pytest

from bandit.decay import closed_form
from bandit.thompson import posterior_from_counts
from service.store import ArmCounts, DecisionRecord
from tests.conftest import ADMIN

TITLE = "drifty"


def put_title(client, half_life_s):
    body = {"artworks": [{"id": "a1"}, {"id": "a2"}], "half_life_s": half_life_s}
    r = client.put(f"/catalog/{TITLE}", json=body, headers=ADMIN)
    assert r.status_code in (200, 201), r.get_json()


def test_posterior_after_a_known_sequence_equals_the_closed_form(make_app):
    app = make_app(stats_cache_s=0.0)
    client = app.test_client()
    put_title(client, 2.0)
    rewarded = {}
    for i in range(40):
        d = client.get(f"/artwork?profile=p{i}&title={TITLE}").get_json()
        if i % 3:
            rewarded[d["event_id"]] = (i % 5) / 4
            assert client.post("/reward", json={"event_id": d["event_id"], "reward": (i % 5) / 4}).status_code == 200
        time.sleep(0.01)
    store = app.extensions["store"]
    records = [json.loads(f[b"record"]) for _, f in store.client.xrange(store.keys.log(TITLE)) if f[b"type"] == b"decision"]
    counts = ArmCounts.from_hash(store.client.hgetall(store.keys.arms(TITLE)))
    now = time.time() + 1.0
    learned = counts.decayed(now, 2.0)
    for art in ("a1", "a2"):
        mine = [r for r in records if r["artwork"] == art]
        n = closed_form([r["timestamp"] for r in mine], [1.0] * len(mine), now, 2.0)
        s = closed_form([r["timestamp"] for r in mine], [rewarded.get(r["event_id"], 0.0) for r in mine], now, 2.0)
        assert learned.impressions[art] == pytest.approx(n, rel=1e-9)
        assert learned.reward_sums.get(art, 0.0) == pytest.approx(s, rel=1e-9, abs=1e-12)
        post = posterior_from_counts([learned.impressions[art]], [learned.reward_sums.get(art, 0.0)])
        assert (post.alpha[0], post.beta[0]) == pytest.approx((1 + s, 1 + n - s), rel=1e-9)
    assert counts.impressions["a1"] + counts.impressions["a2"] == 40  # raw counters still count
    stats = client.get(f"/stats/{TITLE}").get_json()
    assert stats["half_life_s"] == 2.0 and stats["impressions"] == 40


def test_rebase_after_many_half_lives_keeps_the_closed_form(app):
    """Synthetic decision times 100 half-lives apart: the script rescales its sums and moves the
    epoch instead of letting the weights overflow."""
    store = app.extensions["store"]
    client = app.test_client()
    put_title(client, 1.0)
    t0 = 1_700_000_000.0
    times = [t0, t0 + 0.5, t0 + 30.0, t0 + 100.0, t0 + 100.25, t0 + 170.0]
    for k, t in enumerate(times):
        token = f"{k:032x}"
        rec = DecisionRecord(
            event_id=f"{TITLE}~{token}", token=token, timestamp=t, profile="p", title=TITLE, policy="fixed",
            candidates=("a1", "a2"), context={}, draws=(("a1", 1.0),) * 4, half_life_s=1.0,
        )
        store.record_decisions([rec], "new")
    counts = ArmCounts.from_hash(store.client.hgetall(store.keys.arms(TITLE)))
    assert counts.epoch is not None and counts.epoch > t0  # moved forward
    now = t0 + 171.0
    assert counts.decayed(now, 1.0).impressions["a1"] == pytest.approx(closed_form(times, [1.0] * 6, now, 1.0), rel=1e-9)


@pytest.mark.parametrize("value", [0.5, -1, "1", True, 2e9])
def test_a_bad_half_life_is_a_400_naming_it(client, value):
    r = client.put(f"/catalog/{TITLE}", json={"artworks": [{"id": "a1"}], "half_life_s": value}, headers=ADMIN)
    assert r.status_code == 400 and r.get_json()["error"]["field"] == "half_life_s"
