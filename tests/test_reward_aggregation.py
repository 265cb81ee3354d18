"""Per-title reward aggregation (``reward_aggregation``: earliest, sum, max) on a real Redis:
counters move by the difference, the log keeps every change, the export and the trainer see
the aggregated reward; exact under concurrent senders."""

from __future__ import annotations

import multiprocessing as mp
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import pytest

from replay.export import join_records
from service.app import create_app
from service.config import load_settings
from tests.conftest import ADMIN, CLUSTER


@pytest.fixture
def app(make_app):
    return make_app(stats_cache_s=0.0)  # /stats read fresh after each call

def _title(client, title: str, aggregation: str | None) -> None:
    body = {"artworks": [{"id": "a"}, {"id": "b"}], "policy": "thompson"}
    if aggregation is not None:
        body["reward_aggregation"] = aggregation
    assert client.put(f"/catalog/{title}", json=body, headers=ADMIN).status_code == 201


def _counters(app, title: str) -> tuple[float, int]:
    counts = app.extensions["store"].read_counts([title])[title]
    return sum(counts.reward_sums.values()), sum(counts.rewards.values())


def _reward_entries(app, title: str) -> list[dict[str, str]]:
    store = app.extensions["store"]
    return [f for _, f in store.read_log(title) if f["type"] == "reward"]


@pytest.mark.parametrize(
    ("aggregation", "values", "statuses", "final"),
    [
        (None, [0.3, 1.0], ["recorded", "duplicate"], 0.3),  # earliest, the default: today's behaviour
        ("earliest", [0.3, 1.0], ["recorded", "duplicate"], 0.3),
        ("max", [0.3, 1.0, 0.5], ["recorded", "recorded", "duplicate"], 1.0),  # a click upgraded by a play
        ("sum", [0.3, 0.3, 0.6, 0.2], ["recorded", "recorded", "recorded", "duplicate"], 1.0),  # clipped at 1
        ("sum", [0.25, 0.5], ["recorded", "recorded"], 0.75),
    ],
)
def test_aggregated_reward_in_counters_log_and_export(app, client, aggregation, values, statuses, final):
    title = f"agg-{aggregation}"
    _title(client, title, aggregation)
    d = client.get(f"/artwork?profile=p1&title={title}").get_json()
    got = [client.post("/reward", json={"event_id": d["event_id"], "reward": v}).get_json()["status"] for v in values]
    assert got == statuses
    reward_sum, rewarded = _counters(app, title)
    assert reward_sum == pytest.approx(final, abs=1e-12) and rewarded == 1
    stats = client.get(f"/stats/{title}").get_json()
    assert stats["rewards"] == 1 and stats["reward_sum"] == pytest.approx(final, abs=1e-12)
    entries = _reward_entries(app, title)
    assert len(entries) == statuses.count("recorded")
    received = [v for v, s in zip(values, statuses, strict=True) if s == "recorded"]
    assert [float(e["value"]) for e in entries] == received  # every change, with what was received
    assert float(entries[-1]["reward"]) == pytest.approx(final, abs=1e-12)
    # The export's reward is the aggregate, once the window has closed.
    log = [f for _, f in app.extensions["store"].read_log(title)]
    closed = join_records(log, now=time.time() + 3600, window_s=600)
    assert [r["reward"] for r in closed.rows] == pytest.approx([final])
    assert join_records(log, now=time.time(), window_s=600).still_open == 1


def test_catalog_refuses_an_unknown_aggregation(client):
    r = client.put("/catalog/x", json={"artworks": [{"id": "a"}], "reward_aggregation": "mean"}, headers=ADMIN)
    assert r.status_code == 400 and r.get_json()["error"]["field"] == "reward_aggregation"
    _title(client, "shown", "max")
    assert client.get("/catalog/shown").get_json()["reward_aggregation"] == "max"


def _send(args):
    redis_url, prefix, plan = args
    app = create_app(load_settings({}, redis_url=redis_url, key_prefix=prefix, load_catalog=False, redis_cluster=CLUSTER))
    client = app.test_client()
    statuses = []
    for event_id, value in plan:
        statuses.append(client.post("/reward", json={"event_id": event_id, "reward": value}).get_json()["status"])
    return statuses


@pytest.mark.parametrize("aggregation", ["max", "sum"])
def test_concurrent_senders_leave_exact_counters(app, client, redis_url, key_prefix, aggregation):
    """4 processes send rewards for the same 100 decisions in different orders: the counters
    equal the closed-form aggregate of each decision's rewards, and the log's last record too."""
    title = f"race-{aggregation}"
    _title(client, title, aggregation)
    body = client.get("/artwork", query_string=[("profile", "p1")] + [("title", title)] * 50).get_json()
    events = [d["event_id"] for d in body["decisions"]]
    body = client.get("/artwork", query_string=[("profile", "p2")] + [("title", title)] * 50).get_json()
    events += [d["event_id"] for d in body["decisions"]]
    rng = np.random.default_rng(7)
    values = {e: [float(v) for v in rng.choice([0.1, 0.25, 0.5, 1.0], size=4)] for e in events}
    plans = []
    for sender in range(4):  # each sender sends one reward of every decision, in its own order
        order = rng.permutation(len(events))
        plans.append((redis_url, key_prefix, [(events[i], values[events[i]][sender]) for i in order]))
    with ProcessPoolExecutor(4, mp_context=mp.get_context("fork")) as pool:
        results = list(pool.map(_send, plans))
    assert all(s in ("recorded", "duplicate") for r in results for s in r)
    combine = max if aggregation == "max" else (lambda vs: min(sum(vs), 1.0))
    expected = {e: combine(vs) for e, vs in values.items()}
    reward_sum, rewarded = _counters(app, title)
    assert rewarded == len(events)
    assert reward_sum == pytest.approx(sum(expected.values()), abs=1e-9)
    last: dict[str, float] = {}
    for f in _reward_entries(app, title):
        last[f["event_id"]] = float(f["reward"])
    assert last == pytest.approx(expected)


def _arms(app, title: str) -> dict[str, float]:
    store = app.extensions["store"]
    return {k.decode(): float(v) for k, v in store.client.hgetall(store.keys.arms(title)).items()}


def test_aggregation_works_per_signal(app, client):
    """Each signal's reports combine by the title's rule; only the reward signal's aggregate
    moves the bandit, and each signal counts once per decision."""
    body = {"artworks": [{"id": "a"}], "policy": "thompson", "reward_aggregation": "max",
            "reward_signal": "click", "guardrails": ["play"]}
    assert client.put("/catalog/per-signal", json=body, headers=ADMIN).status_code == 201
    d = client.get("/artwork?profile=p1&title=per-signal").get_json()
    sent = [("click", 0.3, "recorded"), ("play", 0.5, "recorded"), ("click", 1.0, "recorded"),
            ("play", 0.2, "duplicate"), ("click", 0.6, "duplicate"), ("play", 0.9, "recorded")]
    for signal, value, status in sent:
        r = client.post("/reward", json={"event_id": d["event_id"], "signal": signal, "reward": value})
        assert r.get_json() == {"status": status}, (signal, value)
    arms = _arms(app, "per-signal")
    assert (arms["s|a"], arms["r|a"]) == (pytest.approx(1.0), 1)  # the click's max, counted once
    assert arms["g|click|a"] == pytest.approx(1.0) and arms["g|play|a"] == pytest.approx(0.9)
    entries = [f for _, f in app.extensions["store"].read_log("per-signal") if f["type"] in ("reward", "signal")]
    assert [(f["type"], f["signal"], float(f["reward"])) for f in entries] == [
        ("reward", "click", 0.3), ("signal", "play", 0.5), ("reward", "click", 1.0), ("signal", "play", 0.9)]
    closed = join_records([f for _, f in app.extensions["store"].read_log("per-signal")], now=time.time() + 3600, window_s=600)
    assert [r["reward"] for r in closed.rows] == [1.0]  # the reward signal's aggregate, not the play's


def test_decaying_counters_move_by_the_difference(app, client):
    body = {"artworks": [{"id": "a"}], "policy": "thompson", "reward_aggregation": "sum", "half_life_s": 3600}
    assert client.put("/catalog/decaying", json=body, headers=ADMIN).status_code == 201
    d = client.get("/artwork?profile=p1&title=decaying").get_json()
    for value in (0.25, 0.5, 0.5):
        client.post("/reward", json={"event_id": d["event_id"], "reward": value})
    arms = _arms(app, "decaying")
    # the title's first decision sets the decay epoch: its weight is 1, so the decayed sums equal the raw ones
    assert arms["dn|new|a"] == 1.0 and arms["ds|a"] == pytest.approx(1.0) and arms["s|a"] == pytest.approx(1.0)
