"""Simulation environments: truth, sampling and validation."""

from __future__ import annotations

import numpy as np
import pytest

from replay.simulation import SimulationError
from replay.simulation.environments import CatalogEnvironment, segmented_titles, two_artworks
from replay.simulation.online import FixedPolicy, run_online
from replay.simulation.simulated_logs import simulate_logs


def test_policy_value_matches_monte_carlo():
    env = segmented_titles(np.random.default_rng(0), n_titles=3, n_artworks=3)
    pi = np.array([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0], [0.1, 0.8, 0.1]])
    rng = np.random.default_rng(1)
    served = run_online(FixedPolicy(pi), env.impressions(rng, 200_000), rng)
    se = served.reward.std() / np.sqrt(served.reward.size)
    assert abs(served.reward.mean() - env.policy_value(pi)) < 4 * se


def test_segments_prefer_different_artworks():
    env = segmented_titles(np.random.default_rng(0), n_titles=2, n_artworks=3)
    best = np.nanargmax(env.ctr, axis=1)  # (title, segment)
    assert all(len(set(row)) > 1 for row in best)
    assert env.best_value() > env.policy_value(np.full((2, 3), 1 / 3))


def test_outcomes_are_bernoulli_of_true_ctr():
    env = two_artworks((0.24, 0.30))
    n = 100_000
    outcomes = env.impressions(np.random.default_rng(2), n).outcomes
    for arm, ctr in ((0, 0.24), (1, 0.30)):
        assert abs(outcomes[:, arm].mean() - ctr) < 4 * np.sqrt(ctr * (1 - ctr) / n)


@pytest.mark.parametrize("logging", ["uniform", "thompson"])
def test_logged_propensities_are_true_ones(logging):
    env = two_artworks()
    frame = simulate_logs(env, np.random.default_rng(3), 2_000, logging)
    assert frame["propensity"].between(0, 1, inclusive="right").all()
    if logging == "uniform":
        assert (frame["propensity"] == 0.5).all()
    else:
        assert frame["propensity"].min() >= 0.01 / 2 - 1e-12  # the uniform mix keeps it away from 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ctr": np.full((1, 2, 4), 1.5)}, "ctr"),
        ({"ctr": np.zeros((1, 3, 4))}, "shape"),
        ({"ctr": np.zeros((1, 2, 4)), "segment_weights": [1, 1]}, "segment_weights"),
    ],
)
def test_environment_validation(kwargs, message):
    with pytest.raises(SimulationError, match=message):
        CatalogEnvironment(("t",), (("a", "b"),), **kwargs)
