"""The reward model: DM's dependence on each reward (the delta method's weights) against finite
differences, and cross-fitting (per-artwork intercepts under context-dependent logging: test_replay_coverage)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from bench.coverage import SCENARIOS
from replay.reward_model import RewardModelError, cross_fit, fit_reward_model


def dm_value(logs, pi) -> float:
    return float(np.mean((pi * fit_reward_model(logs).predict(logs)).sum(axis=1)))


@pytest.mark.parametrize("scenario", ["contextual", "small"])
def test_dm_weights_are_dm_derivatives(scenario):
    draw = SCENARIOS[scenario]()(np.random.default_rng(0))
    logs, pi = draw.logs, draw.output.pi
    weights = fit_reward_model(logs).dm_weights(logs, pi)
    rows = np.random.default_rng(1).choice(logs.n, 8, replace=False)
    h = 1e-4
    for j in rows:
        up, down = logs.reward.copy(), logs.reward.copy()
        up[j] += h
        down[j] -= h
        numeric = (dm_value(replace(logs, reward=up), pi) - dm_value(replace(logs, reward=down), pi)) / (2 * h)
        assert weights[j] / logs.n == pytest.approx(numeric, rel=1e-4, abs=1e-9)


def test_cross_fit_predicts_each_row_without_its_own_reward():
    draw = SCENARIOS["small"]()(np.random.default_rng(2))
    logs = draw.logs
    fit = cross_fit(logs, np.random.default_rng(3), folds=5)
    changed = logs.reward.copy()
    changed[0] = 1.0 - changed[0]
    again = cross_fit(replace(logs, reward=changed), np.random.default_rng(3), folds=5)
    assert np.allclose(fit.q_hat[0], again.q_hat[0])  # row 0's own reward is not in its model
    assert not np.allclose(fit.q_hat, again.q_hat)  # but it is in the other folds' models
    assert fit.mse > 0 and fit.baseline_mse > 0


def test_bad_arguments_name_themselves():
    draw = SCENARIOS["small"]()(np.random.default_rng(4))
    with pytest.raises(RewardModelError, match="strength"):
        fit_reward_model(draw.logs, strength=0)
    with pytest.raises(RewardModelError, match="folds"):
        cross_fit(draw.logs, np.random.default_rng(0), folds=0)
