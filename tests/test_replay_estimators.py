"""Estimators: closed forms, partition invariance, validation, unbiasedness with known truth."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st
from statsmodels.stats.weightstats import DescrStatsW

from replay.estimators import (
    DM,
    DR,
    ESTIMATORS,
    IPS,
    SNDR,
    SNIPS,
    ClippedIPS,
    DRos,
    EstimatorInput,
    EstimatorInputError,
    Replay,
    SwitchDR,
    cressie_read_interval,
    estimate_many,
    replay_acceptance,
    skew_corrected,
)
from replay.evaluation import policy_input
from replay.logs import encode_logs, validate_logs
from replay.policies import TablePolicy
from replay.reward_model import fit_reward_model
from replay.simulation import segmented_titles, simulate_logs

# A small log to compute by hand: 4 rows, 2 artworks.
R = [1.0, 0.0, 1.0, 0.5]
MU = [0.5, 0.25, 0.8, 0.5]
A = [0, 1, 0, 1]
PI = [[0.7, 0.3], [0.2, 0.8], [1.0, 0.0], [0.5, 0.5]]
Q = [[0.6, 0.2], [0.5, 0.4], [0.9, 0.1], [0.3, 0.3]]
ACC = [True, False, True, True]


def small() -> EstimatorInput:
    pc = [PI[i][A[i]] for i in range(4)]
    return EstimatorInput(np.array(R), np.array(MU), np.array(A), np.array(pc), np.array(PI), np.array(Q), np.array(ACC))


def hand_values(clip: float = 100.0, tau: float = 50.0, lam: float = 1000.0) -> dict[str, float]:
    n = len(R)
    w = [PI[i][A[i]] / MU[i] for i in range(n)]
    dm = [sum(PI[i][j] * Q[i][j] for j in range(2)) for i in range(n)]
    e = [R[i] - Q[i][A[i]] for i in range(n)]
    acc_r = [R[i] for i in range(n) if ACC[i]]
    return {
        "ipsclip": sum(min(w[i], clip) * R[i] for i in range(n)) / n,
        "sndr": sum(dm) / n + sum(w[i] * e[i] for i in range(n)) / sum(w),
        "switchdr": sum(dm[i] + (w[i] if w[i] <= tau else 0.0) * e[i] for i in range(n)) / n,
        "dros": sum(dm[i] + lam * w[i] / (w[i] ** 2 + lam) * e[i] for i in range(n)) / n,
        "replay": sum(acc_r) / len(acc_r),
        "ips": sum(w[i] * R[i] for i in range(n)) / n,
        "snips": sum(w[i] * R[i] for i in range(n)) / sum(w),
        "dm": sum(dm) / n,
        "dr": sum(dm[i] + w[i] * (R[i] - Q[i][A[i]]) for i in range(n)) / n,
    }


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_small_log_matches_closed_form(name):
    est = ESTIMATORS[name]().estimate(small(), rng=np.random.default_rng(0))
    assert est.value == pytest.approx(hand_values()[name], rel=1e-12)
    assert est.ci[0] <= est.value <= est.ci[1]


def test_truncating_estimators_bite_where_the_weights_exceed_their_threshold():
    # Row 2 has w = 3.2 (and reward 0, so clipped IPS is unchanged): tau 2 and lam 4 change DR.
    hand = hand_values(clip=2.0, tau=2.0, lam=4.0)
    d = small()
    for est in (ClippedIPS(clip=2.0), SwitchDR(tau=2.0), DRos(lam=4.0)):
        assert est.estimate(d).value == pytest.approx(hand[est.name], rel=1e-12)
    assert hand["switchdr"] != pytest.approx(hand_values()["switchdr"])


def test_sndr_delta_method_matches_influence_function_by_hand():
    rng = np.random.default_rng(5)
    n, k = 400, 3
    pi = rng.dirichlet(np.ones(k), size=n)
    a = rng.integers(k, size=n)
    mu = rng.uniform(0.1, 1.0, size=n)
    r = (rng.random(n) < 0.3).astype(float)
    q = rng.random((n, k)) * 0.5
    d = EstimatorInput(r, mu, a, pi[np.arange(n), a], pi, q)
    e = r - d.q_chosen
    c = (d.w * e).sum() / d.w.sum()
    infl = (d.dm_term - d.dm_term.mean()) + (d.w * e - c * d.w) / d.w.mean()
    est = SNDR().estimate(d)
    assert est.value == pytest.approx(d.dm_term.mean() + c, rel=1e-12)
    assert est.se == pytest.approx(np.sqrt((infl ** 2).sum() / (n - 1) / n), rel=1e-9)


@pytest.mark.parametrize("cls", [IPS, DM, DR, ClippedIPS, SwitchDR, DRos])
def test_mean_estimators_interval_matches_statsmodels(cls):
    rng = np.random.default_rng(3)
    n, k = 500, 3
    pi = rng.dirichlet(np.ones(k), size=n)
    a = rng.integers(k, size=n)
    mu = rng.uniform(0.2, 1.0, size=n)
    r = rng.random(n)
    q = rng.random((n, k))
    d = EstimatorInput(r, mu, a, pi[np.arange(n), a], pi, q)
    def term(rew):
        dr = d.dm_term + d.w * (rew - d.q_chosen)
        return {IPS: d.w * rew, DM: d.dm_term, DR: dr, ClippedIPS: d.w * rew, SwitchDR: dr,
                DRos: d.dm_term + 1000 * d.w / (d.w ** 2 + 1000) * (rew - d.q_chosen)}[cls]

    terms = term(r)
    stats = DescrStatsW(terms)
    est = cls().estimate(d)
    assert est.se == pytest.approx(stats.std_mean, rel=1e-9)
    # The interval is the statsmodels normal interval, widened where Hall's skewness-corrected
    # interval (built here with a root-finder) reaches further. The skewness is that of the terms
    # with each reward drawn 0/1 with the model's probability q_hat at the logged artwork, about
    # the estimate: mixtures of the terms at reward 1 and at reward 0.
    q = d.q_chosen
    dev1, dev0 = term(np.ones(n)) - terms.mean(), term(np.zeros(n)) - terms.mean()
    m2, m3 = (np.mean(q * dev1 ** k + (1 - q) * dev0 ** k) for k in (2, 3))
    lo, hi = stats.zconfint_mean(alpha=0.05)
    h_lo, h_hi = _hall(terms.mean(), stats.std_mean, m3 / m2 ** 1.5, n)
    assert est.ci == pytest.approx((min(lo, h_lo), max(hi, h_hi)), rel=1e-9)
    assert est.ci[1] - est.ci[0] > hi - lo  # these terms are skewed: the correction is not a no-op


def _hall(mean: float, se: float, skew: float, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Hall (1992): invert g(T) = T + a T^2/3 + a^2 T^3/27 + a/6 (a = skew/sqrt(n)) at -z and z."""
    a = skew / np.sqrt(n)

    def root(x):
        return scipy.optimize.brentq(lambda t: t + a * t * t / 3 + a * a * t ** 3 / 27 + a / 6 - x, -50, 50, xtol=1e-14)

    return mean - se * root(z), mean - se * root(-z)


def test_hall_interval_reaches_up_when_low_estimates_come_with_small_errors():
    # Right-skewed terms (rare large importance weights): the mean is low exactly when the rare
    # rows are missing, and then so is the SE. 2,000 data sets of 400 lognormal terms (skewness
    # about 6, truth exp(1.125)): the plain normal interval misses upward far more often than
    # downward; the corrected one is closer to 2.5% on each side.
    rng = np.random.default_rng(5)
    truth = np.exp(1.5 ** 2 / 2)
    x = rng.lognormal(0.0, 1.5, size=(2000, 400))
    m, se = x.mean(axis=1), x.std(axis=1, ddof=1) / np.sqrt(400)
    skew = scipy.stats.skew(x, axis=1)
    plain_below = np.mean(m + 1.96 * se < truth)
    corrected = [skew_corrected(mi, si, gi, 400, 1.959963984540054) for mi, si, gi in zip(m, se, skew, strict=True)]
    hall_below = np.mean([hi < truth for _, hi in corrected])
    assert plain_below > 0.08
    assert hall_below < plain_below - 0.03
    assert skew_corrected(0.5, 0.1, 0.0, 400, 1.96) == pytest.approx((0.5 - 0.196, 0.5 + 0.196))


def test_snips_delta_method_matches_statsmodels_ratio():
    # The delta-method SE of sum(w r)/sum(w) equals the SE of the mean of w (r - V) / mean(w).
    rng = np.random.default_rng(4)
    n = 800
    mu = rng.uniform(0.1, 1.0, n)
    pc = rng.uniform(0, 1, n)
    r = (rng.random(n) < 0.3).astype(float)
    d = EstimatorInput(r, mu, np.zeros(n, dtype=int), pc)
    est = SNIPS().estimate(d)
    v = (d.w * r).sum() / d.w.sum()
    resid = DescrStatsW(d.w * (r - v))
    assert est.se == pytest.approx(resid.std * np.sqrt(n) / d.w.sum(), rel=1e-9)


def test_ess_closed_form():
    d = small()
    w = d.w
    assert IPS().estimate(d).ess == pytest.approx(w.sum() ** 2 / (w * w).sum())
    assert Replay().estimate(d).ess == sum(ACC)


inputs = st.integers(min_value=1, max_value=60).flatmap(
    lambda n: st.tuples(
        st.just(n),
        st.integers(min_value=1, max_value=4),
        st.integers(min_value=0, max_value=2**31 - 1),
        st.integers(min_value=1, max_value=n + 3),
    )
)


@given(inputs)
@settings(max_examples=40, deadline=None)
def test_partitions_combine_to_the_whole(params):
    n, k, seed, chunk = params
    rng = np.random.default_rng(seed)
    pi = rng.dirichlet(np.ones(k), size=n)
    a = rng.integers(k, size=n)
    d = EstimatorInput(rng.random(n), rng.uniform(0.05, 1, n), a, pi[np.arange(n), a], pi, rng.random((n, k)),
                       rng.random(n) < 0.5)
    ests = [cls() for cls in ESTIMATORS.values()]
    whole = estimate_many(ests, d, chunk_size=n)
    parts = estimate_many(ests, d, chunk_size=chunk)
    for x, y in zip(whole, parts, strict=True):
        np.testing.assert_allclose([x.value, x.se, x.ess, *x.ci], [y.value, y.se, y.ess, *y.ci], rtol=1e-9,
                                   atol=1e-12, equal_nan=True)


@pytest.mark.parametrize(
    ("field", "bad", "message"),
    [
        ("propensity", [0.0, 0.5], "propensity"),
        ("propensity", [1.5, 0.5], "propensity"),
        ("propensity", [np.nan, 0.5], "propensity"),
        ("reward", [2.0, 0.0], "reward"),
        ("reward", [-0.1, 0.0], "reward"),
        ("pi_chosen", [1.2, 0.5], "pi_chosen"),
        ("action", [0.5, 1.0], "action"),
        ("pi", [[0.9, 0.9], [0.5, 0.5]], "pi"),
        ("q_hat", [[1.5, 0.0], [0.5, 0.5]], "q_hat"),
        ("reward", [1.0], "reward"),
    ],
)
def test_invalid_inputs_name_the_argument(field, bad, message):
    good = {"reward": [1.0, 0.0], "propensity": [0.5, 0.5], "action": [0, 1], "pi_chosen": [0.5, 0.5],
            "pi": [[0.5, 0.5], [0.5, 0.5]], "q_hat": [[0.1, 0.2], [0.3, 0.4]]}
    good[field] = bad
    with pytest.raises(EstimatorInputError, match=message):
        EstimatorInput(**{k: np.array(v) for k, v in good.items()})


@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=20))
@settings(max_examples=60, deadline=None)
def test_propensity_validation_accepts_exactly_unit_interval(props):
    p = np.array(props)
    n = p.size
    ok = bool(np.all((p > 0) & (p <= 1)))
    build = lambda: EstimatorInput(np.zeros(n), p, np.zeros(n, dtype=int), np.zeros(n))  # noqa: E731
    if ok:
        assert build().n == n
    else:
        with pytest.raises(EstimatorInputError, match="propensity"):
            build()


def test_replay_acceptance_probability_is_pi_over_m_mu():
    from replay.draws import event_key, splitmix64

    n = 200_000
    mu = np.where(np.arange(n) % 2 == 0, 0.25, 0.75)
    pi = np.where(np.arange(n) % 2 == 0, 0.5, 0.5)
    acc = replay_acceptance(pi, mu, splitmix64(event_key([f"e{i}" for i in range(n)]), 11))
    m = max(0.5 / 0.25, 0.5 / 0.75)
    for parity, mu_val in ((0, 0.25), (1, 0.75)):
        expected = 0.5 / (m * mu_val)
        observed = acc[parity::2].mean()
        assert abs(observed - expected) <= 4 * np.sqrt(expected * (1 - expected) / (n / 2))


def test_bootstrap_interval_close_to_normal_interval():
    rng = np.random.default_rng(5)
    n = 20_000
    r = (rng.random(n) < 0.3).astype(float)
    mu = np.full(n, 0.5)
    d = EstimatorInput(r, mu, np.zeros(n, dtype=int), np.full(n, 0.5))
    normal = IPS().estimate(d)
    boot = IPS().estimate(d, bootstrap=300, rng=np.random.default_rng(6))
    width = normal.ci[1] - normal.ci[0]
    assert boot.ci[0] == pytest.approx(normal.ci[0], abs=0.15 * width)
    assert boot.ci[1] == pytest.approx(normal.ci[1], abs=0.15 * width)


def test_warnings_for_tiny_propensities_and_unlogged_actions():
    n = 100
    d = EstimatorInput(np.zeros(n), np.full(n, 1e-4), np.zeros(n, dtype=int), np.full(n, 1e-4),
                       np.tile([0.5, 0.5], (n, 1)), np.zeros((n, 2)))
    warns = " ".join(IPS().estimate(d).warnings)
    assert "tiny" in warns
    assert "never logged" in warns


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4])
def test_unbiased_on_uniform_logs_with_known_truth(seed):
    """Uniform logging over 3 artworks, 100,000 events, table target policy with known value."""
    env = segmented_titles(np.random.default_rng(100), n_titles=2, n_artworks=3)
    rng = np.random.default_rng(seed)
    logs = encode_logs(validate_logs(simulate_logs(env, rng, 100_000, "uniform")))
    target = np.array([[0.6, 0.3, 0.1], [0.1, 0.2, 0.7]])
    truth = env.policy_value(target)
    policy = TablePolicy(env.table(target))
    q_hat = fit_reward_model(logs).predict(logs)
    data = policy_input(logs, policy.evaluate(logs, rng), q_hat)
    ips, snips, dr = estimate_many([IPS(), SNIPS(), DR()], data)
    for est in (ips, snips, dr):
        assert abs(est.value - truth) < 3 * est.se, (est.estimator, est.value, truth, est.se)
    assert dr.ci[1] - dr.ci[0] <= ips.ci[1] - ips.ci[0]


def test_dm_recovers_truth_when_reward_model_is_right():
    env = segmented_titles(np.random.default_rng(100), n_titles=2, n_artworks=3)
    rng = np.random.default_rng(9)
    logs = encode_logs(validate_logs(simulate_logs(env, rng, 60_000, "uniform")))
    target = np.array([[0.6, 0.3, 0.1], [0.1, 0.2, 0.7]])
    data = policy_input(logs, TablePolicy(env.table(target)).evaluate(logs, rng), fit_reward_model(logs).predict(logs))
    dm = DM().estimate(data)
    # Cell means over ~5,000 rows each: the model's own error is about 0.005.
    assert abs(dm.value - env.policy_value(target)) < 0.01
    assert DR().estimate(data).value == pytest.approx(env.policy_value(target), abs=0.01)


@pytest.mark.parametrize("seed", range(6))
def test_el_interval_equals_vw_estimators_cressie_read(seed):
    from estimators.bandits.cressieread import IntervalImpl

    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 3000))
    mu = rng.uniform(0.01, 1.0, n) if seed % 2 else np.full(n, 1 / 3)
    pc = rng.uniform(0, 1, n)
    r = (rng.random(n) < 0.2).astype(float)
    # Our default bound on the weights: 1 / the smallest logged propensity.
    ref = IntervalImpl(wmin=0, wmax=max(1 / mu.min(), 1 + 1e-6), rmin=0, rmax=1, empirical_r_bounds=False)
    for w_i, r_i in zip(pc / mu, r, strict=True):
        ref.add(float(w_i), float(r_i), 0.0, 0)
    lo_ref, hi_ref = ref.get(alpha=0.05)
    d = EstimatorInput(r, mu, np.zeros(n, dtype=int), pc)
    for est in (IPS(), SNIPS()):
        lo, hi = est.estimate(d, interval="el").ci
        assert (lo, hi) == pytest.approx((lo_ref, hi_ref), abs=1e-9)
    unbounded = IntervalImpl(wmin=0, wmax=np.inf, rmin=0, rmax=1, empirical_r_bounds=False)
    for w_i, r_i in zip(pc / mu, r, strict=True):
        unbounded.add(float(w_i), float(r_i), 0.0, 0)
    n_, sw, sww = float(n), (pc / mu).sum(), ((pc / mu) ** 2).sum()
    swr, swwr = (pc / mu * r).sum(), ((pc / mu) ** 2 * r).sum()
    assert cressie_read_interval(n_, sw, sww, swr, swwr, swwr, 0.95) == pytest.approx(unbounded.get(alpha=0.05), abs=1e-9)


def test_no_interval_has_zero_width():
    n = 50
    d = EstimatorInput(np.zeros(n), np.full(n, 0.5), np.zeros(n, dtype=int), np.full(n, 0.5),
                       np.full((n, 2), 0.5), np.zeros((n, 2)), np.ones(n, dtype=bool))
    for est in estimate_many([cls() for cls in ESTIMATORS.values()], d):
        assert est.ci[1] - est.ci[0] > 0.01, est
        assert est.ci[0] <= est.value <= est.ci[1]


def test_without_a_reward_model_the_skewness_uses_the_logs_mean_reward_in_any_partition():
    # IPS asked for alone gets no q_hat: the rewards are smoothed to Bernoulli(the log's mean
    # reward), so a heavy row counts whether it was clicked or not; partitions give the same.
    rng = np.random.default_rng(8)
    n = 600
    mu = np.where(rng.random(n) < 0.05, 0.01, 0.5)
    r = (rng.random(n) < 0.2).astype(float)
    d = EstimatorInput(r, mu, np.zeros(n, dtype=np.int64), np.full(n, 0.5))
    u, w, q = d.w * r, d.w, r.mean()
    m2, m3 = (np.mean(q * (w - u.mean()) ** k + (1 - q) * (-u.mean()) ** k) for k in (2, 3))
    se = u.std(ddof=1) / np.sqrt(n)
    h_lo, h_hi = _hall(u.mean(), se, m3 / m2 ** 1.5, n)
    z = 1.959963984540054
    expected = (min(u.mean() - z * se, h_lo), max(u.mean() + z * se, h_hi))
    assert IPS().estimate(d).ci == pytest.approx(expected, rel=1e-9)
    assert IPS().estimate(d, chunk_size=7).ci == pytest.approx(expected, rel=1e-9)
