"""Propensity integrity check against closed forms and simulations with known faults."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import kstest, power_divergence
from statsmodels.stats.multitest import multipletests

from replay.integrity import check_propensities, holm, imputed_null
from replay.logs import encode_logs, validate_logs
from replay.policies import PolicyOptions
from replay.simulation import segmented_titles, simulate_logs, two_artworks


def encoded(frame: pd.DataFrame):
    return encode_logs(validate_logs(frame))


def three_arm_frame(rng, n, served, logged, title="t1") -> pd.DataFrame:
    a = rng.choice(3, size=n, p=served)
    return pd.DataFrame({
        "event_id": [f"{title}{i}" for i in range(n)], "timestamp": 1.7e9 + np.arange(n), "profile": "p",
        "title": title, "artwork": np.array(["a1", "a2", "a3"])[a], "propensity": np.array(logged)[a],
        "reward": 0.0,
    })


def test_constant_propensities_reduce_to_pearson_chi_square():
    frame = three_arm_frame(np.random.default_rng(0), 1000, (0.2, 0.3, 0.5), (0.2, 0.3, 0.5))
    group = check_propensities(encoded(frame)).groups[0]
    ref = power_divergence(group.observed, 1000 * np.array([0.2, 0.3, 0.5]), lambda_="pearson")
    assert group.statistic == pytest.approx(ref.statistic)
    assert group.dof == pytest.approx(2.0)
    if group.method == "chi-square":
        assert group.p_value == pytest.approx(ref.pvalue)


def test_varying_propensities_give_uniform_p_values_under_the_null():
    # Row-varying policy without segments: the imputation uses the nearest rows in time.
    rng = np.random.default_rng(0)
    p_values = []
    for _ in range(200):
        n = 1_000
        drift = np.linspace(0, 1, n)[:, None]
        probs = (1 - drift) * np.array([0.2, 0.3, 0.5]) + drift * np.array([0.6, 0.3, 0.1])
        a = (probs.cumsum(axis=1) < rng.random(n)[:, None]).sum(axis=1)
        frame = pd.DataFrame({
            "event_id": [f"e{i}" for i in range(n)], "timestamp": 1.7e9 + np.arange(n), "profile": "p",
            "title": "t1", "artwork": np.array(["a1", "a2", "a3"])[a], "propensity": probs[np.arange(n), a],
            "reward": 0.0,
        })
        p_values.append(check_propensities(encoded(frame), rng=rng).groups[0].p_value)
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


def test_tiny_propensities_and_deterministic_logging_are_warned_about():
    frame = simulate_logs(two_artworks(), np.random.default_rng(5), 1_000, "uniform")
    tiny = frame.copy()
    tiny.loc[0, "propensity"] = 1e-5
    assert any("tiny" in f for f in check_propensities(encoded(tiny)).groups[0].warnings)
    fixed = frame.copy()
    fixed["artwork"], fixed["propensity"] = "a1", 1.0
    report = check_propensities(encoded(fixed))
    assert any("deterministic" in f for f in report.groups[0].warnings)
    assert not report.flagged  # consistent, only unusable for other artworks


def test_holm_equals_statsmodels():
    p = np.random.default_rng(6).random(12) ** 3
    assert holm(p) == pytest.approx(multipletests(p, method="holm")[1])


def test_tiny_counts_are_calibrated():
    # N=12 over 0.6/0.3/0.1: expected 1.2 in the last cell, where the chi-square p-value is wrong.
    rng = np.random.default_rng(7)
    p = np.array([check_propensities(encoded(three_arm_frame(rng, 12, (0.6, 0.3, 0.1), (0.6, 0.3, 0.1))),
                                     rng=rng).groups[0].p_value for _ in range(300)])
    assert np.mean(p < 0.05) <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / 300)


def group_p_values(make, reps: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.array([g.p_value for _ in range(reps) for g in check_propensities(encoded(make(rng)), rng=rng).groups])


def test_small_count_thompson_groups_are_calibrated():
    # 4 titles x 3 artworks x 4 segments, ~150 rows per title: Neyman's form rejected 9% at 0.05.
    env = segmented_titles(np.random.default_rng(7))
    options = PolicyOptions(ts_batch=50)
    p = group_p_values(lambda rng: simulate_logs(env, rng, 600, "thompson", options=options), 75, 8)
    assert p.size == 300
    assert np.mean(p < 0.05) <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / p.size)


def ab_frame(rng, profiles: int = 40, impressions: int = 300) -> pd.DataFrame:
    from bandit.ab_assignment import ABSplit, assign

    split = ABSplit.equal(("a1", "a2", "a3"), salt="t1")
    prof = rng.integers(profiles, size=impressions)
    arms = [assign(split, f"u{p}") for p in prof.tolist()]
    return pd.DataFrame({
        "event_id": [f"e{i}" for i in range(impressions)], "timestamp": 1.7e9 + np.arange(impressions),
        "profile": [f"u{p}" for p in prof], "title": "t1", "artwork": [a.arm for a in arms],
        "propensity": [a.propensity for a in arms], "reward": 0.0, "policy": "ab",
    })


def test_ab_split_is_checked_per_profile():
    rng = np.random.default_rng(9)
    reports = [check_propensities(encoded(ab_frame(rng)), alpha=0.05, rng=rng) for _ in range(60)]
    assert all(r.groups[0].unit == "profile" and r.groups[0].n <= 40 for r in reports)
    # Per impression, 40 profiles x 7.5 visits are overdispersed and flagged most of the time.
    assert np.mean([r.flagged for r in reports]) <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / 60)


def test_power_against_a_skewed_split_logged_as_uniform():
    rng = np.random.default_rng(10)
    flagged = 0
    for _ in range(60):
        frame = three_arm_frame(rng, 150, (0.5, 0.3, 0.2), (1 / 3,) * 3)
        flagged += check_propensities(encoded(frame), alpha=0.05, rng=rng).flagged
    # Pearson's test at alpha 0.05 has power 0.98 here (non-central chi-square, lambda 21).
    assert flagged >= 55


def test_holm_keeps_a_log_of_many_honest_titles_quiet():
    rng = np.random.default_rng(11)
    env = segmented_titles(np.random.default_rng(12), n_titles=10)
    flagged = [check_propensities(encoded(simulate_logs(env, rng, 1000, "uniform")), alpha=0.05, rng=rng).flagged
               for _ in range(60)]
    # Without the correction 10 groups at 0.05 flag 40% of honest logs.
    assert np.mean(flagged) <= 0.05 + 3 * np.sqrt(0.05 * 0.95 / 60)


class RecordingPolicy:
    """Wraps an online policy and keeps the exact distributions it served from."""

    def __init__(self, policy):
        self.policy, self.name, self.pmfs = policy, policy.name, []

    def steady(self, traffic, start, stop):
        return self.policy.steady(traffic, start, stop)

    def pmf(self, traffic, start, stop):
        probs = self.policy.pmf(traffic, start, stop)
        self.pmfs.append(probs.copy())
        return probs

    def learn(self, *args):
        self.policy.learn(*args)

    def decision(self):
        return self.policy.decision()


def test_imputed_variances_follow_the_simulators_exact_propensities():
    # W_a = sum_i 1/mu(a|x_i) sets the test's scale; the logs show mu only for the served artwork.
    # An artwork Thompson stopped serving after its uniform first batch kept that batch's 1/3 under
    # nearest-row imputation (W_a 5-9x too small, false alarms); the residual gets it right.
    from replay.simulation.online import run_online
    from replay.simulation.simulated_logs import to_logs
    from replay.simulation.thompson import ThompsonOnline

    env = segmented_titles(np.random.default_rng(7))
    options = PolicyOptions(ts_batch=50)
    rng = np.random.default_rng(13)
    ratios = []
    for _ in range(30):
        policy = RecordingPolicy(ThompsonOnline(env.n_arms, len(env.segments), options.thompson(), options.ts_batch,
                                                use_segments=True))
        traffic = env.impressions(rng, 600)
        logs = encoded(to_logs(env, traffic, run_online(policy, traffic, rng), policy="thompson"))
        exact = np.vstack(policy.pmfs)
        assert exact[np.arange(600), logs.action] == pytest.approx(logs.propensity)
        for t in range(len(env.titles)):
            rows = np.flatnonzero(logs.title == t)
            k = len(logs.arms[t])
            imputed = imputed_null(logs, t, rows)[:, :k]
            ratios.extend((1 / imputed).sum(axis=0) / (1 / exact[rows, :k]).sum(axis=0))
    # Nearest-row imputation: min 0.14, 2% of the 360 ratios under 0.5; the residual: min 0.63.
    assert min(ratios) >= 0.5


def test_a_groups_monte_carlo_p_value_does_not_depend_on_the_other_groups():
    """Draws come from the group's key: what lets the partitioned engine check groups on any worker."""
    rng = np.random.default_rng(26)
    small = three_arm_frame(rng, 150, (0.42, 0.33, 0.25), (1 / 3, 1 / 3, 1 / 3), title="t1")  # MC p ~ 0.02
    other = three_arm_frame(rng, 150, (0.2, 0.3, 0.5), (1 / 3, 1 / 3, 1 / 3), title="t0").assign(
        timestamp=lambda f: f["timestamp"] + 0.5)
    alone = check_propensities(encoded(small), alpha=0.05).groups[0]
    together = check_propensities(encoded(pd.concat([other, small], ignore_index=True)), alpha=0.05).groups
    # t0 is checked first and draws too: a shared stream would give t1 other draws
    assert [(g.title, g.method) for g in together] == [("t0", "monte-carlo"), ("t1", "monte-carlo")]
    assert together[1].p_value == alone.p_value
    assert check_propensities(encoded(small), alpha=0.05, rng=np.random.default_rng(1)).groups[0].p_value != alone.p_value
