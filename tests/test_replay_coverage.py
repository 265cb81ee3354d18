"""Small fixed-seed versions of bench/coverage.py: intervals hold the known truth about 95% of the time.

The full runs (500 repetitions per scenario) are ``python -m bench.coverage``; these keep enough
repetitions that a real defect cannot pass (the old DM interval, which ignored the model's
error, covered 4.5% in the ``small`` scenario; a 20% too narrow interval covers about 89%).
"""

from __future__ import annotations

import numpy as np
import pytest

from bench.coverage import SCENARIOS, one_rep, segmented_scenario


def coverage(scenario: str, reps: int, seed: int) -> dict[tuple[str, str], np.ndarray]:
    draw_fn = SCENARIOS[scenario]()
    rng = np.random.default_rng(seed)
    hits: dict[tuple[str, str], list[bool]] = {}
    widths: dict[tuple[str, str], list[float]] = {}
    for _ in range(reps):
        d = draw_fn(rng)
        for key, (_v, lo, hi) in one_rep(d, rng, bootstrap=0).items():
            hits.setdefault(key, []).append(lo <= d.truth <= hi)
            widths.setdefault(key, []).append(hi - lo)
    return {k: (np.mean(v), np.min(widths[k])) for k, v in hits.items()}


def test_every_interval_covers_on_small_uniform_logs():
    # 150 repetitions: a 95% interval covers >= 90% with probability 0.998.
    for (est, method), (share, min_width) in coverage("small", 150, 1).items():
        assert share >= 0.90, f"{est}/{method} covered {share:.1%}"
        assert min_width > 0, f"{est}/{method} gave a zero-width interval"


@pytest.mark.parametrize("estimator", ["dm", "dr"])
def test_model_based_estimators_are_consistent_under_context_dependent_logging(estimator):
    draw_fn = SCENARIOS["contextual"]()
    rng = np.random.default_rng(2)
    errors = []
    for _ in range(25):
        d = draw_fn(rng)
        value, lo, hi = one_rep(d, rng, bootstrap=0)[(estimator, "normal")]
        errors.append((value - d.truth) / ((hi - lo) / 3.92))
    # Mean standardized error over 25 logs: sd 0.2 when unbiased; the former model (slopes without
    # per-artwork intercepts, unweighted rows) gives 1.4 here. Either the intercepts or the
    # inverse-propensity weights alone pass.
    assert abs(np.mean(errors)) < 0.6


def test_intervals_do_not_miss_one_sidedly_under_thompson_logging():
    # Logs of the on-policy Thompson sampler (min propensity 0.0033, importance-weighted terms
    # with skewness ~50): a low estimate comes with a small SE, so the plain normal interval's
    # upper bound falls below the truth too often (bench: 7-10% of 500 at n=20,000, coverage
    # 89-92%). Here 120 logs of n=2,000, fixed seed: with Hall's correction from the sample
    # skewness (which is small when the heavy rows are missing too) the upper bound misses in
    # 7.4% of (log, estimator) pairs and coverage is 90-92.5%; with the reward-model-smoothed
    # skewness in 1.9%, coverage 96.7-98.3% (MC error of the pooled share about 1.5 points, so
    # this guards the one-sided miss; bench.coverage's thompson scenario is the full check).
    draw_fn = segmented_scenario(2000, "thompson")
    rng = np.random.default_rng(4)
    below: dict[str, list[bool]] = {}
    cover: dict[str, list[bool]] = {}
    for _ in range(120):
        d = draw_fn(rng)
        for (est, method), (_v, lo, hi) in one_rep(d, rng, bootstrap=0).items():
            if method == "normal":
                below.setdefault(est, []).append(hi < d.truth)
                cover.setdefault(est, []).append(lo <= d.truth <= hi)
    assert np.mean([np.mean(v) for v in below.values()]) < 0.045
    for est, hits in cover.items():
        assert np.mean(hits) >= 0.93, f"{est} covered {np.mean(hits):.1%}"
