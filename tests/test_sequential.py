"""Sequential A/B: always-valid p-values and confidence sequences (mixture SPRT), by simulation."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from replay.cli import main
from replay.sequential import SequentialInputError, _stats, peeking_simulation, sequential_looks


def test_likelihood_ratio_matches_the_closed_form():
    x_t, n_t, x_c, n_c, tau = 130, 1000, 100, 1000, 0.02
    p = (x_t + x_c) / (n_t + n_c)
    v = p * (1 - p) * (1 / n_t + 1 / n_c)
    d = x_t / n_t - x_c / n_c
    lam = math.sqrt(v / (v + tau**2)) * math.exp(d * d * tau**2 / (2 * v * (v + tau**2)))
    diff, inv_lr, half, _ = _stats(np.array([x_t]), np.array([n_t]), np.array([x_c]), np.array([n_c]), 0.05, tau)
    assert inv_lr[0] == pytest.approx(1 / lam, rel=1e-12)
    assert half[0] == pytest.approx(math.sqrt(v * (v + tau**2) / tau**2 * (math.log((v + tau**2) / v) - 2 * math.log(0.05))))


def test_daily_peeking_keeps_the_always_valid_false_positive_rate_at_alpha():
    r = peeking_simulation(np.random.default_rng(0), experiments=1500, days=20, users_per_arm_per_day=150)
    # Binomial sd at 5% over 1,500 experiments is 0.56%; the peeked z-test is near 25%.
    assert r.sequential_false_positive <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / 1500)
    assert r.fixed_false_positive > 0.15
    assert abs(r.fixed_final_day_false_positive - 0.05) < 4 * math.sqrt(0.05 * 0.95 / 1500)


def test_confidence_sequence_covers_the_true_difference_at_every_look():
    rng = np.random.default_rng(1)
    misses = 0
    for _ in range(400):
        x_t = rng.binomial(150, 0.12, size=20).cumsum()
        x_c = rng.binomial(150, 0.10, size=20).cumsum()
        n = 150 * np.arange(1, 21)
        looks = sequential_looks(x_t, n, x_c, n)
        misses += bool(np.any((looks.ci_low > 0.02) | (looks.ci_high < 0.02)))
    assert misses / 400 <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / 400)


def test_a_real_effect_is_found():
    rng = np.random.default_rng(2)
    x_t, x_c = rng.binomial(500, 0.13, 30).cumsum(), rng.binomial(500, 0.10, 30).cumsum()
    looks = sequential_looks(x_t, 500 * np.arange(1, 31), x_c, 500 * np.arange(1, 31))
    assert looks.stopped_at is not None and looks.ci_low[-1] > 0


def test_bad_counts_name_the_argument():
    with pytest.raises(SequentialInputError, match="counts"):
        sequential_looks([5, 3], [10, 20], [1, 2], [10, 20])
    with pytest.raises(SequentialInputError, match="tau"):
        sequential_looks([1], [10], [1], [10], tau=0)


def test_cli_demo_prints_both_rates(capsys):
    assert main(["abtest", "--sequential", "--demo", "--experiments", "500", "--days", "10", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["fixed_false_positive"] > out["sequential_false_positive"]


def test_cli_sequential_on_logs_reports_one_look_per_day(tmp_path, capsys):
    rng = np.random.default_rng(3)
    n = 3000
    arm = np.where(np.arange(n) % 2 == 0, "A", "B")
    frame = pd.DataFrame({
        "event_id": [f"e{i}" for i in range(n)], "timestamp": 1.7e9 + np.sort(rng.uniform(0, 5 * 86_400, n)),
        "profile": [f"p{i}" for i in range(n)], "title": "t", "artwork": arm, "propensity": 0.5,
        "reward": (rng.random(n) < np.where(arm == "B", 0.2, 0.1)).astype(float),
    })
    path = tmp_path / "logs.csv"
    frame.to_csv(path, index=False)
    assert main(["abtest", str(path), "--sequential", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["looks"]) == 5
    assert out["looks"][-1]["n_t"] + out["looks"][-1]["n_c"] == n
    assert out["stopped_at_day"] is not None  # 10% vs 20% over 1,500 per arm
