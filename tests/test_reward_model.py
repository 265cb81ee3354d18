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


def _segmented_logs(n: int, seed: int, subsets: bool = False):
    """Uniform logs; with ``subsets``, every third row lists one candidate fewer (not the logged one)."""
    from replay.logs import encode_logs, validate_logs
    from replay.simulation import segmented_titles, simulate_logs

    env = segmented_titles(np.random.default_rng(100), n_titles=3, n_artworks=4)
    frame = simulate_logs(env, np.random.default_rng(seed), n, "uniform")
    if subsets:
        frame["candidates"] = [
            [c for c in cands if c == art or c != cands[0]][:3] if i % 3 == 0 else list(cands)
            for i, (cands, art) in enumerate(zip(frame["candidates"], frame["artwork"], strict=True))
        ]
    return env, encode_logs(validate_logs(frame))


def _shrunk_means(idx, values, v, shape, count, strength):
    """Weighted cell means shrunk to (title, artwork), then to the overall mean, straight from the rows."""
    flat = values.reshape(values.shape[0], -1)
    size = shape[0] * shape[1] * shape[2]
    sums = np.stack([np.bincount(idx, weights=v * flat[:, j], minlength=size) for j in range(flat.shape[1])],
                    axis=-1).reshape(*shape, flat.shape[1])
    overall = (v[:, None] * flat).sum(axis=0) / v.sum()
    title_art = (sums.sum(axis=2) + strength * overall) / (count.sum(axis=2) + strength)[..., None]
    cell = (sums + strength * title_art[:, :, None, :]) / (count + strength)[..., None]
    return cell if values.ndim == 2 else cell[..., 0]


def _direct_fit(logs, rows, strength=20.0, ridge=10.0):
    """The reward model of the module docstring fitted on ``rows`` the direct way: features
    standardized and centred per cell row by row, one ridge regression per slot (the reference
    for the sums' normal equations)."""
    t, a, g, r = logs.title[rows], logs.action[rows], logs.segment[rows], logs.reward[rows]
    shape = (len(logs.titles), logs.k, len(logs.segments))
    idx = (t.astype(np.int64) * shape[1] + a) * shape[2] + g
    inv = 1.0 / logs.propensity[rows]
    v = inv * (inv.size / inv.sum())
    count = np.bincount(idx, weights=v, minlength=int(np.prod(shape))).reshape(shape)
    cell_r = _shrunk_means(idx, r, v, shape, count, strength)
    if logs.features is None:
        return cell_r, None, count
    x = logs.features[rows]
    scale = np.where(x.std(axis=0) > 0, x.std(axis=0), 1.0)
    z = (x - x.mean(axis=0)) / scale
    cell_z = _shrunk_means(idx, z, v, shape, count, strength)
    zt, rt = z - cell_z[t, a, g], r - cell_r[t, a, g]
    coef = np.zeros((shape[1], z.shape[1]))
    for j in range(shape[1]):
        on = a == j
        zv = zt[on] * v[on, None]
        coef[j] = np.linalg.solve(zv.T @ zt[on] + ridge * np.eye(z.shape[1]), zv.T @ rt[on])
    return cell_r - np.einsum("tagd,ad->tag", cell_z, coef), coef, count


@pytest.mark.parametrize("features", [False, True])
def test_cell_sums_fit_every_fold_like_the_rows_do(features):
    """The (fold, cell) sums give each fold's model (offsets and, with context features, the ridge
    slopes from the summed normal equations) exactly as fitting its rows does."""
    from replay.reward_model import CellSums

    _, logs = _segmented_logs(3_000, 5)
    if features:  # a context-dependent reward, features far from 0 (the sums' shift keeps them exact)
        x = np.random.default_rng(9).normal([40.0, 1e4], [5.0, 30.0], size=(logs.n, 2))
        logs = replace(logs, features=x, feature_names=("age", "income"),
                       reward=np.clip(logs.reward + 0.01 * (x[:, 0] - 40), 0, 1))
    fold = np.random.default_rng(6).permutation(np.arange(logs.n) % 3)
    sums = CellSums.of(logs, fold, 3)
    for f in range(3):
        keep = np.flatnonzero(fold != f)
        offset, coef, count = _direct_fit(logs, keep)
        from_sums = sums.model(np.flatnonzero(np.arange(3) != f))
        np.testing.assert_allclose(from_sums.cell, offset, rtol=1e-9)
        np.testing.assert_allclose(from_sums.count, count, rtol=1e-12)
        if features:
            assert np.abs(coef).max() > 1e-3  # the slopes are there to check
            np.testing.assert_allclose(from_sums.coef, coef, rtol=1e-9)
        direct = fit_reward_model(logs, rows=keep)
        np.testing.assert_allclose(direct.cell, from_sums.cell, rtol=1e-12)
    columns = ("title", "action", "segment", "propensity", "reward") + (("features",) if features else ())
    halves = CellSums.of(replace(logs, **{k: getattr(logs, k)[:1000] for k in columns}), fold[:1000], 3, sums.shift)
    rest = CellSums.of(replace(logs, **{k: getattr(logs, k)[1000:] for k in columns}), fold[1000:], 3, sums.shift)
    np.testing.assert_allclose((halves + rest).model().cell, sums.model().cell, rtol=1e-12)


@pytest.mark.parametrize("policy", ["table", "uniform", "logged", "ab"])
def test_coded_policies_estimate_exactly_as_dense_ones(policy):
    """Fixed policies go through small tables (no (n, K) arrays): same estimates as the dense path."""
    from replay.estimators import ESTIMATORS, estimate_many
    from replay.evaluation import policy_input
    from replay.policies import ABPolicy, LoggedPolicy, TablePolicy, UniformPolicy
    from replay.policy_base import PolicyOutput

    env, logs = _segmented_logs(4_000, 7, subsets=True)
    assert len(logs.combo_mask) > len(logs.titles)  # several candidate sets per title
    target = np.random.default_rng(8).dirichlet(np.ones(4), size=3)
    pol = {"table": TablePolicy(env.table(target)), "uniform": UniformPolicy(), "logged": LoggedPolicy(),
           "ab": ABPolicy()}[policy]
    out = pol.evaluate(logs, np.random.default_rng(0))
    assert out.coded is not None
    dense = PolicyOutput(out.pi, out.pi_chosen, out.accepted)
    fit = cross_fit(logs, np.random.default_rng(9), folds=3)
    names = ["ips", "snips", "dm", "dr", "sndr", "switchdr", "dros"]
    got = {}
    for label, o in (("coded", out), ("dense", dense)):
        data = policy_input(logs, o, fit)
        ests = [ESTIMATORS[n]() for n in names]
        got[label] = estimate_many(ests, data)
    assert got["coded"][0].n == logs.n
    for a, b in zip(got["coded"], got["dense"], strict=True):
        assert a.value == pytest.approx(b.value, rel=1e-12), a.estimator
        assert a.ci == pytest.approx(b.ci, rel=1e-12), a.estimator
        assert a.warnings == b.warnings
