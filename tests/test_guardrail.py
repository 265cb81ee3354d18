"""The clickbait test against statsmodels, and its false-flag rate by simulation."""

from __future__ import annotations

import numpy as np
import pytest
from statsmodels.stats.proportion import proportions_ztest

from bandit.guardrail import clickbait_check, one_sided_z
from bandit.thompson import BanditInputError, expected_max


@pytest.mark.parametrize("counts", [(30, 100, 20, 100), (5, 40, 9, 35), (400, 1000, 380, 1000)])
def test_one_sided_z_equals_statsmodels(counts):
    s_a, n_a, s_b, n_b = counts
    _, expected = proportions_ztest([s_a, s_b], [n_a, n_b], alternative="larger")
    assert one_sided_z(s_a, n_a, s_b, n_b) == pytest.approx(expected, rel=1e-9)


def test_false_flag_rate_is_at_most_alpha_when_play_through_is_equal():
    rng = np.random.default_rng(7)
    flags = 0
    runs = 2000
    for _ in range(runs):
        n = np.array([2000, 2000, 2000])
        clicks = rng.binomial(n, [0.12, 0.08, 0.08])  # a real click leader...
        plays = rng.binomial(clicks, 0.5)  # ...with the same play-through
        flags += clickbait_check(n, clicks, plays, alpha=0.05).flagged
    assert flags / runs <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / runs)


def test_a_clickbait_leader_is_flagged_with_power():
    rng = np.random.default_rng(8)
    n = np.array([2000, 2000])
    hits = sum(
        clickbait_check(n, c, rng.binomial(c, [0.3, 0.6])).flagged for c in (rng.binomial(n, [0.12, 0.08]) for _ in range(200))
    )
    assert hits >= 190


def test_bad_counts_raise_the_package_error():
    with pytest.raises(BanditInputError):
        clickbait_check([1, 2], [1], [0, 0])
    with pytest.raises(BanditInputError):
        clickbait_check([1, 2], [-1, 0], [0, 0])


@pytest.mark.parametrize("ab", [([1, 1], [1, 1]), ([30, 12], [70, 50]), ([500, 480, 20], [500, 520, 80])])
def test_expected_max_equals_monte_carlo(ab):
    a, b = (np.array(x, dtype=float) for x in ab)
    draws = np.random.default_rng(3).beta(a, b, size=(400_000, len(a))).max(axis=1)
    assert expected_max(a, b) == pytest.approx(draws.mean(), abs=4 * draws.std() / np.sqrt(len(draws)) + 1e-4)
