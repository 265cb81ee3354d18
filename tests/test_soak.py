"""The soak in a short bounded run, and its reconciliation shown to catch losses and doubles."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from bench.soak import reconcile, reconciliation_ok
from service.keys import Keys
from tests.conftest import REDIS_CLI, REDIS_SERVER

ROOT = Path(__file__).resolve().parent.parent
TITLE = "stranger-lights"


@pytest.mark.slow
@pytest.mark.skipif(REDIS_SERVER is None, reason="the soak starts its own redis-server")
def test_short_soak_with_a_redis_crash_loses_and_doubles_nothing(tmp_path):
    out = tmp_path / "soak.json"
    args = ["--seconds", "5", "--workers", "2", "--clients", "2", "--titles", "5", "--down", "1", "--json", str(out)]
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "soak.py"), *args], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads(out.read_text())
    rec, load = report["reconciliation"], report["load"]
    assert report["ok"] and rec["lost"] == 0 and rec["double"] == 0
    assert rec["expected_rewards"] > 0
    assert rec["present_in_log_once"] == rec["present_in_stats"] == rec["expected_rewards"]
    assert rec["duplicates_answered_duplicate"] == rec["duplicates_posted"] > 0
    assert load["fallbacks"] > 0  # the outage was seen, and answered with fallbacks, not errors
    assert set(load["non_200"]) <= {"POST /reward 503"}
    assert "RESULT: OK" in run.stdout


@pytest.mark.slow
@pytest.mark.skipif(REDIS_SERVER is None or REDIS_CLI is None, reason="the soak starts its own redis-server and Sentinels/cluster")
@pytest.mark.parametrize("mode", ["failover", "cluster"])
def test_short_soak_through_a_primary_failover_loses_and_doubles_no_acknowledged_reward(tmp_path, mode):
    """failover: Sentinel + 1 replica, the primary killed (-9); cluster: 3 masters + 3 replicas, a
    master killed (-9). Both with REDIS_WAIT_REPLICAS=1."""
    out = tmp_path / "soak.json"
    args = ["--mode", mode, "--seconds", "6", "--workers", "2", "--clients", "2", "--titles", "5", "--json", str(out)]
    run = subprocess.run([sys.executable, str(ROOT / "bench" / "soak.py"), *args], capture_output=True, text=True, timeout=240, cwd=ROOT)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads(out.read_text())
    rec, load = report["reconciliation"], report["load"]
    assert "killed (-9)" in report["fault"] and ("promoted" in report["fault"] or "took over" in report["fault"])
    assert report["ok"] and rec["lost"] == 0 and rec["double"] == 0 and rec["expected_rewards"] > 0
    assert rec["present_in_log_once"] == rec["present_in_stats"] == rec["expected_rewards"]
    assert rec["duplicates_answered_duplicate"] == rec["duplicates_posted"] > 0
    assert rec["rewards_404_for_logged_decisions"] == 0
    assert load["retried_503"] > 0  # the failover was felt, and answered 503 + Retry-After
    assert set(load["non_200"]) <= {"POST /reward 503"}  # never a 500
    assert "RESULT: OK" in run.stdout


@pytest.fixture
def rewarded(app):
    """Forty decisions of one title, half of them rewarded through the API, as the soak records them."""
    client = app.test_client()
    served: Counter = Counter()
    rewards = []
    for i in range(40):
        d = client.get(f"/artwork?profile=p{i}&title={TITLE}").get_json()
        served[f"{TITLE}|{d['artwork']}"] += 1
        if i % 2:
            assert client.post("/reward", json={"event_id": d["event_id"], "reward": 0.5}).get_json()["status"] == "recorded"
            again = client.post("/reward", json={"event_id": d["event_id"], "reward": 0.5}).get_json()["status"]
            rewards.append({"event_id": d["event_id"], "title": TITLE, "artwork": d["artwork"], "reward": 0.5,
                            "outcome": "recorded", "unanswered": 0, "again": again})
    store = app.extensions["store"]
    return store, rewards, served


def check(store, rewards, served) -> dict:
    return reconcile(store.client, Keys(store.keys.prefix), [TITLE], rewards, served)


def test_reconciliation_passes_on_an_intact_store(rewarded):
    rec = check(*rewarded)
    assert reconciliation_ok(rec)
    assert (rec["recorded_acks"], rec["present_in_log_once"], rec["present_in_stats"], rec["lost"], rec["double"]) == (20, 20, 20, 0, 0)
    assert rec["impressions_served"] == rec["impressions_counted"] == 40


def test_reconciliation_sees_a_lost_reward(rewarded):
    store, rewards, served = rewarded
    log = store.keys.log(TITLE)
    entry_id, _ = next((i, f) for i, f in store.client.xrange(log) if f[b"type"] == b"reward")
    store.client.xdel(log, entry_id)
    rec = check(store, rewards, served)
    assert rec["lost"] == 1 and not reconciliation_ok(rec)


def test_reconciliation_sees_a_double_count(rewarded):
    store, rewards, served = rewarded
    first = rewards[0]
    store.client.hincrby(store.keys.arms(TITLE), f"r|{first['artwork']}", 1)
    store.client.xadd(store.keys.log(TITLE), {"type": "reward", "event_id": first["event_id"], "reward": "0.5", "artwork": first["artwork"]})
    rec = check(store, rewards, served)
    assert rec["double"] >= 1 and not reconciliation_ok(rec)


def test_reconciliation_sees_a_repeat_answered_recorded(rewarded):
    store, rewards, served = rewarded
    rewards[0]["again"] = "recorded"
    rec = check(store, rewards, served)
    assert rec["duplicates_answered_recorded"] == 1 and not reconciliation_ok(rec)


def test_reconciliation_sees_a_lost_impression(rewarded):
    store, rewards, served = rewarded
    served[f"{TITLE}|{rewards[0]['artwork']}"] += 1  # a decision served that Redis never counted
    rec = check(store, rewards, served)
    assert rec["impressions_lost"] == 1 and not reconciliation_ok(rec)


def test_reconciliation_sees_a_refused_reward_for_a_logged_decision_in_every_mode(rewarded):
    store, rewards, served = rewarded
    rewards.append({**rewards[0], "outcome": "unknown"})  # a 404 for a decision the log holds
    for may_lose in (False, True):
        rec = check(store, rewards, served)
        assert rec["rewards_404_for_logged_decisions"] == 1 and not reconciliation_ok(rec, decisions_may_be_lost=may_lose)


def test_reconciliation_tolerates_a_lost_decision_only_after_a_failover(rewarded):
    store, rewards, served = rewarded
    served[f"{TITLE}|{rewards[0]['artwork']}"] += 1  # served, then lost with an unreplicated primary
    rewards.append({**rewards[0], "event_id": f"{TITLE}~{'0' * 32}", "outcome": "unknown"})  # its reward: a 404
    rec = check(store, rewards, served)
    assert rec["impressions_lost"] == 1 and rec["rewards_404_for_logged_decisions"] == 0
    assert not reconciliation_ok(rec) and reconciliation_ok(rec, decisions_may_be_lost=True)
