"""Offline warm start: `replay train-vw` from logs, publish to a title, evaluate `vw:MODEL`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import redis

from bandit.vw_features import decision_context
from replay.cli import main
from replay.logs import encode_logs, load_logs
from replay.policy_registry import make_policy
from replay.simulation import personalized as sim
from service.keys import Keys
from service.models import ModelStore


def write_vw_logs(path, seed: int, n: int = 3_000) -> np.ndarray:
    """Uniformly logged decisions of the personalized catalog, with VW contexts, as JSON Lines;
    returns each row's group (0 comedy fan, 1 action fan)."""
    rng = np.random.default_rng(seed)
    profiles = sim.make_profiles(rng, 200)
    traffic = sim.make_traffic(rng, len(profiles), n)
    groups = []
    with open(path, "w") as fh:
        for i in range(traffic.u.size):
            p = profiles[traffic.profile[i]]
            arm = int(rng.integers(5))
            ctx = decision_context(p.features, traffic.requests[i], sim.segment_of(p.features), sim.artwork_tags())
            fh.write(json.dumps({
                "event_id": f"e{i}", "timestamp": 1.7e9 + i, "profile": f"{p.id}-{seed}", "title": "vw-sim",
                "artwork": sim.artwork_ids()[arm], "propensity": 0.2,
                "reward": float(traffic.u[i] < sim.CTR[p.group, arm]), "policy": "uniform",
                "candidates": list(sim.artwork_ids()), "context": ctx, "segment": ctx["segment"],
            }) + "\n")
            groups.append(p.group)
    return np.array(groups)


@pytest.fixture
def vw_logs(tmp_path):
    path = tmp_path / "logs.jsonl"
    write_vw_logs(path, seed=9)
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
    """Trained on one log, evaluated on another (new profiles and traffic): on held-out rows the
    saved model gives comedy fans mostly the comedic artwork and action fans the action one."""
    out = tmp_path / "model.vw"
    assert main(["train-vw", str(vw_logs), "--out", str(out)]) == 0
    held_out = tmp_path / "held_out.jsonl"
    groups = write_vw_logs(held_out, seed=10)
    logs = encode_logs(load_logs(held_out))
    groups = groups[logs.order]
    fixed = make_policy(f"vw:{out}").evaluate(logs, np.random.default_rng(0))
    np.testing.assert_allclose(fixed.pi.sum(axis=1), 1.0, atol=1e-9)
    comedic, action = (logs.arms[0].index(a) for a in ("a-comedic", "a-action"))
    comedy_fans, action_fans = fixed.pi[groups == 0], fixed.pi[groups == 1]
    assert comedy_fans[:, comedic].mean() > 0.5 > comedy_fans[:, action].mean()
    assert action_fans[:, action].mean() > 0.5 > action_fans[:, comedic].mean()
    # Held-out IPS against uniform's true 0.15 and the per-group oracle's 0.30.
    ips = float(np.mean(fixed.pi_chosen / logs.propensity * logs.reward))
    assert ips > 0.15 * 1.3
    learning = make_policy("vw").evaluate(logs, np.random.default_rng(0))
    assert learning.accepted is not None and 0 < learning.accepted.sum() < logs.n
