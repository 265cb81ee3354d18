"""The product features' simulations with known truth, small fixed-seed versions of
``compare --scenario clickbait|drift|sticky`` run on the simulation core; the core's sticky
repeats and forgetting counters; and decayed counters against their closed form."""

from __future__ import annotations

import numpy as np
import pytest

from bandit.decay import REBASE_HALF_LIVES, closed_form, decayed, growth_weight
from bandit.thompson import BanditInputError
from replay.simulation import product as ps
from replay.simulation.environments import ClickbaitArms, DriftArms, StickyVisits
from replay.simulation.online import FixedPolicy, run_online
from replay.simulation.thompson import ThompsonLearner


def test_sticky_ips_is_unbiased_where_naive_per_impression_ips_is_not():
    r = ps.sticky(seeds=60, seed=0)
    assert r.sticky_bias_in_se < 1.0 and abs(r.sticky_mean - r.truth) < 3 * r.sticky_mc_se
    assert r.naive_bias_in_se > 5.0


def test_quality_play_optimization_picks_the_honest_artwork_where_clicks_pick_the_clickbait():
    click = ps.clickbait("click", seeds=10, seed=0, horizon=4000)
    play = ps.clickbait("play", seeds=10, seed=0, horizon=4000)
    assert click.picks["clickbait"] >= 0.9
    assert play.picks["honest"] >= 0.9
    assert play.plays_per_1000 > click.plays_per_1000 and click.clicks_per_1000 > play.clicks_per_1000


def test_decay_recovers_from_drift_at_least_3x_faster():
    never = ps.drift(None, seeds=4, seed=0, horizon=16_000)
    forget = ps.drift(1000.0, seeds=4, seed=0, horizon=16_000)
    assert forget.censored == 0
    assert never.recovery >= 3 * forget.recovery


def test_growth_weighted_sums_read_back_equal_the_closed_form_across_a_rebase():
    rng = np.random.default_rng(5)
    h = 10.0
    times = np.sort(rng.uniform(0, 3 * REBASE_HALF_LIVES * h, 300))
    values = rng.random(300)
    stored, epoch = 0.0, 0.0
    for t, v in zip(times, values, strict=True):
        if t - epoch > REBASE_HALF_LIVES * h:  # what the store does: rescale once, move the epoch
            stored, epoch = stored / growth_weight(t, epoch, h), t
        stored += v * growth_weight(t, epoch, h)
    now = times[-1] + 3.0
    assert float(decayed(stored, now, epoch, h)) == pytest.approx(closed_form(times, values, now, h), rel=1e-12)


@pytest.mark.parametrize("half_life", [0, -1, float("nan"), float("inf"), "10"])
def test_bad_half_life_raises_the_package_error(half_life):
    with pytest.raises(BanditInputError):
        growth_weight(1.0, 0.0, half_life)


def test_compare_prints_the_sticky_table_and_refuses_bad_arguments_in_one_line(capsys):
    from replay.cli import main

    assert main(["compare", "--scenario", "sticky", "--seeds", "3"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[2].startswith("naive") and out[3].startswith("sticky")
    assert main(["compare", "--scenario", "sticky", "--seeds", "1"]) == 1
    assert main(["compare", "--scenario", "drift", "--half-life", "0"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "--seeds" in err[0] and "--half-life" in err[1]


def test_run_online_shows_a_sticky_repeat_its_first_decisions_artwork_and_logs_that_propensity():
    env = StickyVisits(ctrs=(0.3, 0.3, 0.3), visits=3, period=0.2)
    traffic = env.impressions(np.random.default_rng(1), 3_000)
    assert np.all(traffic.repeat_of < np.arange(traffic.n)) and np.all(traffic.repeat_of[traffic.repeat_of >= 0] >= 0)
    policy = FixedPolicy(np.array([[0.2, 0.3, 0.5]]))
    run = run_online(policy, traffic, np.random.default_rng(2))
    rep = np.flatnonzero(traffic.repeat_of >= 0)
    first = traffic.repeat_of[rep]
    assert rep.size == 2_000 and np.all(traffic.repeat_of[first] == -1)
    assert np.array_equal(run.action[rep], run.action[first])  # the same artwork for the period
    assert np.array_equal(run.propensity[rep], run.propensity[first])
    assert np.allclose(run.current_propensity, np.array([0.2, 0.3, 0.5])[run.action])
    # the first decisions alone are draws from the policy (repeats add no draws of their own)
    shares = np.bincount(run.action[traffic.repeat_of == -1], minlength=3) / 1_000
    assert np.allclose(shares, [0.2, 0.3, 0.5], atol=0.05)


def test_thompson_learner_with_a_half_life_reads_the_closed_form_of_its_events_across_a_rebase():
    from bandit.thompson import ThompsonSampling

    h = 5.0
    learner = ThompsonLearner(ThompsonSampling(), np.array([2]), 1, 2, False, batch=7, half_life=h)
    rng = np.random.default_rng(4)
    action = rng.integers(2, size=500)
    reward = (rng.random(500) < 0.4).astype(float)
    for start in range(0, 500, 7):
        stop = min(start + 7, 500)
        learner.update(np.zeros(stop - start, dtype=int), np.zeros(stop - start, dtype=int), action[start:stop], reward[start:stop])
        learner.refresh(0)
    assert learner.epoch[0] > 0  # it rebased (500 events > 40 half-lives)
    times = np.arange(500)
    for arm in (0, 1):
        mine = action == arm
        n = decayed(learner.n[0, 0, arm], 500, learner.epoch[0], h)
        s = decayed(learner.s[0, 0, arm], 500, learner.epoch[0], h)
        assert float(n) == pytest.approx(closed_form(times[mine], np.ones(mine.sum()), 500, h), rel=1e-9)
        assert float(s) == pytest.approx(closed_form(times[mine], reward[mine], 500, h), rel=1e-9)


def test_clickbait_traffic_plays_only_after_clicks_at_the_true_play_through():
    env = ClickbaitArms()
    traffic = env.impressions(np.random.default_rng(0), 200_000)
    plays = traffic.with_reward("play")
    assert np.all(plays.outcomes <= traffic.outcomes)
    assert np.allclose(plays.outcomes.mean(axis=0), env.play, atol=0.003)
    assert plays.with_reward("click").outcomes is traffic.outcomes


@pytest.mark.parametrize("make", [
    lambda: DriftArms(rates=(0.1, 1.5)),
    lambda: ClickbaitArms(click=(0.1, 0.2), play_through=(0.5,), arms=("a", "b")),
    lambda: StickyVisits(visits=0),
])
def test_product_environments_refuse_malformed_truth_with_the_simulation_error(make):
    from replay.simulation import SimulationError

    with pytest.raises(SimulationError):
        make()
