"""Offline warm start: `replay train-vw` from logs, publish to a title, evaluate `vw:MODEL`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import redis

from bandit.vw_features import decision_context
from replay import personalized_sim as sim
from replay.cli import main
from replay.logs import encode_logs, load_logs
from replay.policy_registry import make_policy
from service.keys import Keys
from service.models import ModelStore


@pytest.fixture
def vw_logs(tmp_path):
    """Uniformly logged decisions of the personalized catalog, with VW contexts, as JSON Lines."""
    rng = np.random.default_rng(9)
    profiles = sim.make_profiles(rng, 200)
    traffic = sim.make_traffic(rng, len(profiles), 3_000)
    path = tmp_path / "logs.jsonl"
    with open(path, "w") as fh:
        for i in range(traffic.u.size):
            p = profiles[traffic.profile[i]]
            arm = int(rng.integers(5))
            ctx = decision_context(p.features, traffic.requests[i], sim.segment_of(p.features), sim.artwork_tags())
            fh.write(json.dumps({
                "event_id": f"e{i}", "timestamp": 1.7e9 + i, "profile": p.id, "title": "vw-sim",
                "artwork": sim.artwork_ids()[arm], "propensity": 0.2,
                "reward": float(traffic.u[i] < sim.CTR[p.group, arm]), "policy": "uniform",
                "candidates": list(sim.artwork_ids()), "context": ctx, "segment": ctx["segment"],
            }) + "\n")
    return path


def test_train_vw_publishes_a_warm_start_that_the_trainer_and_workers_pick_up(vw_logs, tmp_path, redis_url,
                                                                              key_prefix, capsys):
    out = tmp_path / "model.vw"
    code = main(["train-vw", str(vw_logs), "--out", str(out), "--redis", redis_url, "--title", "vw-sim",
                 "--prefix", key_prefix])
    printed = capsys.readouterr().out
    assert code == 0 and "learned 3000 rows (3000 with full VW features)" in printed and out.stat().st_size > 0
    published = ModelStore(redis.Redis.from_url(redis_url), Keys(key_prefix)).load("vw-sim")
    assert (published.version, published.source, published.learned) == (1, "warm-start", 3000)
    assert published.data == out.read_bytes()


@pytest.mark.parametrize("argv,message", [
    (["--redis", "redis://127.0.0.1:1/0"], "--redis needs --title"),
    (["--title", "nope"], "no rows of title 'nope'"),
    (["--init", "/nonexistent/model"], "--init /nonexistent/model"),
])
def test_train_vw_user_errors_are_one_line_exit_1(vw_logs, tmp_path, capsys, argv, message):
    assert main(["train-vw", str(vw_logs), "--out", str(tmp_path / "m"), *argv]) == 1
    assert message in capsys.readouterr().err


def test_evaluate_policy_vw_from_a_saved_model_prefers_each_groups_artwork(vw_logs, tmp_path):
    out = tmp_path / "model.vw"
    assert main(["train-vw", str(vw_logs), "--out", str(out)]) == 0
    logs = encode_logs(load_logs(vw_logs))
    fixed = make_policy(f"vw:{out}").evaluate(logs, np.random.default_rng(0))
    learning = make_policy("vw").evaluate(logs, np.random.default_rng(0))
    for output in (fixed, learning):
        np.testing.assert_allclose(output.pi.sum(axis=1), 1.0, atol=1e-9)
    assert learning.accepted is not None and learning.accepted.sum() > 0
    # IPS value of the saved model vs uniform's true 0.15 (in-sample, so only a sanity bound).
    ips = float(np.mean(fixed.pi_chosen / logs.propensity * logs.reward))
    assert ips > 0.15 * 1.3
