"""Reward signals on a real Redis: each signal counted once per decision, only the title's reward
signal teaches the bandit, per-signal rates and the clickbait flag in /stats."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import ADMIN

TITLE = "signal-title"


def put_title(client, title_id=TITLE, artworks=("a1", "a2"), **extra):
    body = {"artworks": [{"id": a} for a in artworks], "default": artworks[0], **extra}
    r = client.put(f"/catalog/{title_id}", json=body, headers=ADMIN)
    assert r.status_code in (200, 201), r.get_json()


def art_row(stats, artwork):
    return next(a for a in stats["artworks"] if a["artwork"] == artwork)


def test_each_signal_counts_exactly_once_under_8_concurrent_senders(make_app):
    # eight workers, eight connection pools (a loaded test machine: room for slow answers)
    apps = [make_app(redis_timeout_s=5.0, catalog_refresh_s=0.0) for _ in range(8)]
    client = apps[0].test_client()
    put_title(client)
    events = []
    for _ in range(10):
        body = client.get("/artwork", query_string=[("profile", "p1")] + [("title", TITLE)] * 20).get_json()
        events += [d["event_id"] for d in body["decisions"]]

    def send(i):
        c = apps[i].test_client()
        statuses = []
        # every sender sends every event's click and play, starting at a different event
        for event_id in events[i * 25 :] + events[: i * 25]:
            for signal in ("click", "play"):
                statuses.append(c.post("/reward", json={"event_id": event_id, "signal": signal}).get_json()["status"])
        return statuses

    with ThreadPoolExecutor(8) as pool:
        statuses = [s for batch in pool.map(send, range(8)) for s in batch]
    assert statuses.count("recorded") == 2 * 200 and statuses.count("duplicate") == 7 * 2 * 200
    stats = client.get(f"/stats/{TITLE}").get_json()
    assert stats["rewards"] == 200 and stats["reward_sum"] == 200  # the bandit learned each click once
    assert sum(a["signals"]["click"]["sum"] for a in stats["artworks"]) == 200
    assert sum(a["signals"]["play"]["sum"] for a in stats["artworks"]) == 200
    store = apps[0].extensions["store"]
    entries = [f for _, f in store.client.xrange(store.keys.log(TITLE), count=10_000)]
    assert sum(f[b"type"] == b"reward" for f in entries) == 200  # learners read clicks only
    plays = [f for f in entries if f[b"type"] == b"signal"]
    assert len(plays) == 200 and {f[b"signal"] for f in plays} == {b"play"}
    assert len({f[b"event_id"] for f in plays}) == 200


def test_only_the_titles_reward_signal_moves_the_bandit(make_app):
    client = make_app(stats_cache_s=0.0).test_client()
    put_title(client, reward_signal="play", guardrails=["click"])
    d = client.get(f"/artwork?profile=p&title={TITLE}").get_json()
    assert client.post("/reward", json={"event_id": d["event_id"], "signal": "click"}).get_json() == {"status": "recorded"}
    stats = client.get(f"/stats/{TITLE}").get_json()
    assert stats["rewards"] == 0 and art_row(stats, d["artwork"])["signals"]["click"]["sum"] == 1
    # no signal named: the title's reward signal
    assert client.post("/reward", json={"event_id": d["event_id"], "reward": 0.5}).get_json() == {"status": "recorded"}
    assert client.post("/reward", json={"event_id": d["event_id"], "signal": "play"}).get_json() == {"status": "duplicate"}
    stats = client.get(f"/stats/{TITLE}").get_json()
    assert (stats["rewards"], stats["reward_sum"], stats["reward_signal"]) == (1, 0.5, "play")
    assert art_row(stats, d["artwork"])["quality_play_rate"] == 0.5


def test_a_signal_the_title_does_not_track_is_a_400_naming_it(client):
    put_title(client)
    d = client.get(f"/artwork?profile=p&title={TITLE}").get_json()
    for signal, field in (("share", "signal"), ("Play", "signal"), (3, "signal"), ("a|b", "signal")):
        r = client.post("/reward", json={"event_id": d["event_id"], "signal": signal})
        assert r.status_code == 400 and r.get_json()["error"]["field"] == field, r.get_json()
    bad = client.put(f"/catalog/{TITLE}", json={"artworks": [{"id": "a"}], "guardrails": ["x|y"]}, headers=ADMIN)
    assert bad.status_code == 400 and bad.get_json()["error"]["field"] == "guardrails"


def _play_world(client, plays_of_clicks_a1: int):
    """About 200 impressions per artwork (A/B split over 400 profiles): a1 is clicked on every
    impression, a2 on every other one; of every 5 clicks a1 gets ``plays_of_clicks_a1`` plays,
    a2 gets 4."""
    put_title(client, policy="ab")
    seen = {"a1": 0, "a2": 0}
    for i in range(400):
        d = client.get(f"/artwork?profile=u{i}&title={TITLE}").get_json()
        art = d["artwork"]
        seen[art] += 1
        k = seen[art]
        clicked = art == "a1" or k % 2 == 0
        if clicked:
            client.post("/reward", json={"event_id": d["event_id"], "signal": "click"})
            nth_click = k if art == "a1" else k // 2
            if nth_click % 5 < (plays_of_clicks_a1 if art == "a1" else 4):
                client.post("/reward", json={"event_id": d["event_id"], "signal": "play"})
    return client.get(f"/stats/{TITLE}").get_json()


def test_stats_flag_the_artwork_leading_on_clicks_and_trailing_on_play_through(client):
    stats = _play_world(client, plays_of_clicks_a1=1)
    a1, a2 = art_row(stats, "a1"), art_row(stats, "a2")
    assert a1["click_rate"] == 1.0 and a2["click_rate"] == pytest.approx(0.5, abs=0.01)
    assert a1["play_through"] == pytest.approx(0.2, abs=0.01) and a2["play_through"] == pytest.approx(0.8, abs=0.02)
    assert a1["quality_play_rate"] == pytest.approx(0.2, abs=0.01) and a2["quality_play_rate"] == pytest.approx(0.4, abs=0.01)
    assert stats["clickbait"]["artwork"] == "a1" and stats["clickbait"]["flagged"] is True
    assert stats["clickbait"]["p_value"] < 0.01


def test_an_artwork_leading_on_clicks_with_the_same_play_through_is_not_flagged(client):
    stats = _play_world(client, plays_of_clicks_a1=4)
    assert stats["clickbait"]["artwork"] == "a1" and stats["clickbait"]["flagged"] is False
