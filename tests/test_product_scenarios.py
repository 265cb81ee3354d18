"""The product features' simulations with known truth, small fixed-seed versions of
``compare --scenario clickbait|drift|sticky``; and decayed counters against their closed form."""

from __future__ import annotations

import numpy as np
import pytest

from bandit.decay import REBASE_HALF_LIVES, closed_form, decayed, growth_weight
from bandit.thompson import BanditInputError
from replay import product_scenarios as ps


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
