"""Propensity integrity check against closed forms and simulations with known faults."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import kstest, power_divergence

from replay.integrity import check_propensities, inverse_propensity_test
from replay.logs import encode_logs, validate_logs
from replay.simulation import segmented_titles, simulate_logs, two_artworks


def encoded(frame: pd.DataFrame):
    return encode_logs(validate_logs(frame))


def test_constant_propensities_reduce_to_neyman_chi_square():
    mu = np.array([0.2, 0.3, 0.5])
    observed = np.array([230, 280, 490])
    n = observed.sum()
    s, d = observed / mu, observed / mu**2
    stat, dof, p = inverse_propensity_test(int(n), observed > 0, s, d)
    ref = power_divergence(observed, n * mu, lambda_="neyman")
    assert stat == pytest.approx(ref.statistic)
    assert dof == pytest.approx(2.0)
    assert p == pytest.approx(ref.pvalue)


def test_varying_propensities_give_uniform_p_values_under_the_null():
    rng = np.random.default_rng(0)
    p_values = []
    for _ in range(300):
        n, k = 2_000, 3
        probs = rng.dirichlet(np.full(k, 2.0), size=n) * 0.9 + 0.1 / k  # row-varying policy
        a = (probs.cumsum(axis=1) < rng.random(n)[:, None]).sum(axis=1)
        mu = probs[np.arange(n), a]
        counts = np.bincount(a, minlength=k)
        s = np.bincount(a, weights=1 / mu, minlength=k)
        d = np.bincount(a, weights=1 / mu**2, minlength=k)
        p_values.append(inverse_propensity_test(n, counts > 0, s, d)[2])
    assert kstest(p_values, "uniform").pvalue > 0.001


@pytest.mark.parametrize("logging", ["uniform", "thompson"])
def test_honest_logs_are_not_flagged(logging):
    env = segmented_titles(np.random.default_rng(1), n_titles=2)
    report = check_propensities(encoded(simulate_logs(env, np.random.default_rng(2), 20_000, logging)))
    assert not report.flagged, report
    assert all(g.p_value > 0.01 for g in report.groups)


def test_bandit_logged_as_uniform_is_flagged():
    frame = simulate_logs(two_artworks(), np.random.default_rng(3), 20_000, "thompson")
    frame["propensity"] = 0.5  # the classic bug: logging 1/K while a bandit served unevenly
    report = check_propensities(encoded(frame))
    assert report.flagged
    assert "disagree" in report.groups[0].flags[0]


def test_forgotten_uniform_mix_and_wrong_artwork_propensity_are_flagged():
    rng = np.random.default_rng(4)
    table = {"t1": {"a1": 0.2, "a2": 0.8}}
    frame = simulate_logs(two_artworks(), rng, 20_000, "table", table=table)
    swapped = frame.copy()
    swapped["propensity"] = np.where(swapped["artwork"] == "a1", 0.8, 0.2)  # propensity of the other artwork
    assert check_propensities(encoded(swapped)).flagged
    assert not check_propensities(encoded(frame)).flagged


def test_tiny_propensities_and_deterministic_logging_are_flagged():
    frame = simulate_logs(two_artworks(), np.random.default_rng(5), 1_000, "uniform")
    tiny = frame.copy()
    tiny.loc[0, "propensity"] = 1e-5
    assert any("tiny" in f for f in check_propensities(encoded(tiny)).groups[0].flags)
    fixed = frame.copy()
    fixed["artwork"], fixed["propensity"] = "a1", 1.0
    flags = check_propensities(encoded(fixed)).groups[0].flags
    assert any("deterministic" in f for f in flags)
