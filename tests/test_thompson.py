"""Thompson sampling: propensities against numerical integration, shrinkage, validation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, stats

from bandit.thompson import (
    ActionSampler,
    BanditInputError,
    ThompsonSampling,
    decide_from_probabilities,
    monte_carlo_propensities,
    posterior_from_counts,
    shrunk_segment_posterior,
    ts_propensities,
)


def integrated_propensities(alpha, beta) -> np.ndarray:
    """Reference: adaptive quadrature of pdf_i * prod_{j != i} cdf_j over arm i's support."""
    out = []
    for i in range(len(alpha)):
        def integrand(x, i=i):
            others = [stats.beta.cdf(x, alpha[j], beta[j]) for j in range(len(alpha)) if j != i]
            return stats.beta.pdf(x, alpha[i], beta[i]) * np.prod(others)

        lo, hi = stats.beta.ppf([1e-12, 1 - 1e-12], alpha[i], beta[i])
        # Breakpoints where the other arms' cdfs change, so a narrow dip inside a wide posterior
        # is not stepped over.
        marks = stats.beta.ppf([1e-9, 0.01, 0.5, 0.99, 1 - 1e-9], np.array(alpha)[:, None], np.array(beta)[:, None])
        points = sorted({float(x) for x in marks.ravel() if lo < x < hi})
        out.append(integrate.quad(integrand, lo, hi, points=points or None, limit=1000, epsabs=1e-12)[0])
    return np.array(out)


counts = st.integers(min_value=0, max_value=20_000)
ctrs = st.floats(min_value=0.0, max_value=1.0)


@settings(max_examples=40, deadline=None)
@given(arms=st.lists(st.tuples(counts, ctrs), min_size=2, max_size=3))
def test_propensities_match_numerical_integration(arms):
    n = np.array([a[0] for a in arms], dtype=float)
    s = np.round(n * np.array([a[1] for a in arms]))
    alpha, beta = 1 + s, 1 + n - s
    p = ts_propensities(alpha, beta)
    assert p.sum() == pytest.approx(1.0, abs=1e-9)
    np.testing.assert_allclose(p, integrated_propensities(alpha, beta), atol=5e-8)  # measured worst case 2e-8 (three sharp posteriors), typically 1e-9


@pytest.mark.parametrize(
    "alpha,beta",
    [
        ([1, 1], [1, 1]),
        ([241, 301], [761, 701]),  # the classic 24% vs 30% after 1,000 impressions each
        ([3, 50, 9], [10, 150, 20]),
        ([1, 2, 3, 4, 5], [5, 4, 3, 2, 1]),
        ([24001, 30001, 2], [76001, 70001, 2]),  # two sharp posteriors and one flat one
    ],
)
def test_propensities_agree_with_sampling(alpha, beta):
    rng = np.random.default_rng(0)
    p = ts_propensities(alpha, beta)
    mc = monte_carlo_propensities(alpha, beta, rng, draws=200_000)
    # 200k draws: standard error <= 0.0012, so 0.006 is ~5 standard errors.
    np.testing.assert_allclose(p, mc, atol=0.006)
    assert p.sum() == pytest.approx(1.0)


def test_symmetric_arms_are_equally_likely():
    p = ts_propensities([5, 5, 5, 5], [7, 7, 7, 7])
    np.testing.assert_allclose(p, 0.25, atol=1e-9)


def test_uniform_mix_floors_every_propensity():
    ts = ThompsonSampling(uniform_mix=0.02)
    p = ts.action_probabilities(ts.posterior([10_000, 10_000], [3_000, 1_000]))
    assert p.min() >= 0.01 - 1e-12
    assert p.sum() == pytest.approx(1.0)


@given(seed=st.integers(0, 2**32 - 1), k=st.integers(1, 8))
def test_decision_propensity_is_the_probability_of_the_chosen_arm(seed, k):
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.ones(k))
    d = decide_from_probabilities(p, rng)
    assert 0 <= d.arm < k
    assert d.propensity == p[d.arm]


def test_decisions_follow_the_probabilities():
    rng = np.random.default_rng(3)
    p = np.array([0.1, 0.6, 0.3])
    arms = [decide_from_probabilities(p, rng).arm for _ in range(20_000)]
    np.testing.assert_allclose(np.bincount(arms, minlength=3) / 20_000, p, atol=0.015)


@pytest.mark.parametrize("p", [[1.0], [0.1, 0.6, 0.3], [0.0, 0.5, 0.0, 0.5], [0.01] * 10 + [0.9]])
def test_action_sampler_follows_the_probabilities(p):
    sampler = ActionSampler.of(p)
    rng = np.random.default_rng(11)
    arms = np.array([sampler.draw(rng) for _ in range(40_000)])
    freq = np.bincount(arms, minlength=len(p)) / arms.size
    np.testing.assert_allclose(freq, np.asarray(p) / sum(p), atol=0.01)
    assert all(freq[i] == 0 for i, x in enumerate(p) if x == 0)


def test_fractional_rewards_are_fractional_successes():
    post = posterior_from_counts([10], [2.5])
    assert post.alpha[0] == 3.5 and post.beta[0] == 8.5


def test_segment_with_no_data_follows_the_rest_of_the_title():
    # Title: arm 0 at 30%, arm 1 at 20% over 10,000 impressions each; the segment saw nothing.
    post = shrunk_segment_posterior([10_000, 10_000], [3_000, 2_000], [0, 0], [0, 0], strength=200)
    np.testing.assert_allclose(post.mean, [0.3, 0.2], atol=1e-3)
    assert post.alpha[0] + post.beta[0] == pytest.approx(200)


def test_segment_with_much_data_follows_its_own():
    # The segment prefers arm 1 strongly over 20,000 impressions; the rest of the title prefers arm 0.
    post = shrunk_segment_posterior(
        [30_000, 30_000], [7_000, 7_000], [10_000, 10_000], [1_000, 5_000], strength=200
    )
    assert post.mean[1] > post.mean[0]
    np.testing.assert_allclose(post.mean, [0.1, 0.5], atol=0.01)


def test_single_segment_reduces_to_plain_thompson():
    plain = posterior_from_counts([50, 70], [10, 30])
    seg = shrunk_segment_posterior([50, 70], [10, 30], [50, 70], [10, 30])
    np.testing.assert_allclose(seg.alpha, plain.alpha)
    np.testing.assert_allclose(seg.beta, plain.beta)


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: ts_propensities([], []), "alpha and beta"),
        (lambda: ts_propensities([1, 0], [1, 1]), "> 0"),
        (lambda: ts_propensities([1, np.nan], [1, 1]), "finite"),
        (lambda: posterior_from_counts([1, 2], [1]), "equal-length"),
        (lambda: posterior_from_counts([-1], [0]), "non-negative"),
        (lambda: ThompsonSampling(uniform_mix=1.0), "uniform_mix"),
        (lambda: ThompsonSampling(prior=(0, 1)), "prior"),
    ],
)
def test_bad_input_names_the_argument(call, message):
    with pytest.raises(BanditInputError, match=message):
        call()
