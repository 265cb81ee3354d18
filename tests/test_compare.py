"""A/B vs Thompson sampling (vs VW) on shared simulated traffic."""

from __future__ import annotations

import json

import numpy as np
import pytest

from replay.abtest import plan_sample_size
from replay.cli import main
from replay.simulation import SimulationError
from replay.simulation.comparison import ABTest, compare_policies, run_policy
from replay.simulation.environments import BernoulliArms, PersonalizedArms
from replay.simulation.online import FixedPolicy, draw, run_online
from replay.simulation.thompson import ThompsonOnline

CLASSIC = BernoulliArms((0.24, 0.30), ("A", "B"))


@pytest.fixture(scope="module")
def classic_comparison():
    """The 24%/30% problem over 10,000 impressions, six seeds (TS refreshing every
    ``REFRESH`` impressions, the one default)."""
    return compare_policies(CLASSIC, horizon=10_000, seeds=range(6), include=("ab", "thompson"))


def test_thompson_regret_is_at_most_half_of_the_ab_test(classic_comparison):
    ab, ts = classic_comparison.policy("ab"), classic_comparison.policy("thompson")
    assert ts.regret <= 0.5 * ab.regret
    assert ts.clicks > ab.clicks - 0.5 * ab.regret  # the regret gap shows up in realized clicks too


def test_ab_explores_exactly_its_planned_sample(classic_comparison):
    planned = plan_sample_size(0.24, 0.06, alpha=0.05, power=0.8).n_per_arm
    ab = classic_comparison.policy("ab")
    assert classic_comparison.ab_n_per_arm == planned
    assert all(r.decided_at == 2 * planned for r in ab.runs)
    # during exploration half the traffic is on the worse artwork: regret >= gap * explored/2 (about)
    assert ab.regret >= 0.06 * planned * 0.9


def test_thompson_decides_for_the_best_artwork_sooner(classic_comparison):
    ab, ts = classic_comparison.policy("ab"), classic_comparison.policy("thompson")
    assert ts.decided_share == 1.0 and ts.correct_share(CLASSIC.best) >= 5 / 6
    assert ts.best_decision_time < ab.decision_time
    assert ts.best_share > ab.best_share


def test_shared_traffic_is_coupled_across_artworks():
    outcomes = CLASSIC.impressions(np.random.default_rng(0), 50_000).outcomes
    assert outcomes.shape == (50_000, 2)
    assert np.all(outcomes[:, 1] >= outcomes[:, 0])  # whoever clicks the 24% artwork clicks the 30% one
    assert outcomes.mean(axis=0) == pytest.approx([0.24, 0.30], abs=0.01)


@pytest.mark.parametrize(("arm", "regret", "share"), [(1, 0.0, 1.0), (0, 0.06 * 1000, 0.0)])
def test_regret_accounting_with_fixed_policies(arm, regret, share):
    traffic = CLASSIC.impressions(np.random.default_rng(1), 1000)
    outcomes = traffic.outcomes
    run = run_policy(FixedPolicy.always(arm, 2), CLASSIC, traffic, np.random.default_rng(2))
    assert run.regret == pytest.approx(regret)
    assert run.best_share == share
    assert run.clicks == outcomes[:, arm].sum()
    assert run.cumulative_regret[-1] == pytest.approx(regret)
    assert run.decided_at == 0 and run.first_decision == arm
    assert run.best_decided_at == (0 if arm == CLASSIC.best else None)


@pytest.mark.parametrize(("ship_rule", "expected"), [("significant", 0), ("best", 1)])
def test_ab_ship_rule(ship_rule, expected):
    ab = ABTest(2, n_per_arm=100, ship_rule=ship_rule)
    for i in range(200):  # B looks better (32% vs 28%) but not significantly so
        arm = i % 2
        ab.update(arm, float((i // 2) % 25 < (8 if arm else 7)))
    assert ab.decision() == expected
    traffic = CLASSIC.impressions(np.random.default_rng(0), 50)
    assert ab.steady(traffic, 0, 50) == 50  # shipped: one artwork from now on
    np.testing.assert_array_equal(ab.pmf(traffic, 0, 50), np.eye(2)[[expected] * 50])


def test_ab_ships_a_significant_winner():
    ab = ABTest(3, n_per_arm=1000)
    env = BernoulliArms((0.2, 0.2, 0.3))
    run = run_online(ab, env.impressions(np.random.default_rng(0), 4_000), np.random.default_rng(1), best=env.best)
    assert run.decided_at == 3_000 and run.first_decision == 2 and run.best_decided_at == 3_000
    assert run.propensity[:3_000] == pytest.approx(1 / 3)
    assert (run.action[3_000:] == 2).all() and (run.propensity[3_000:] == 1.0).all()


def test_thompson_policy_logs_valid_propensities():
    ts = ThompsonOnline([3], refresh=1)
    traffic = BernoulliArms((0.1, 0.5, 0.2)).impressions(np.random.default_rng(1), 300)
    rng = np.random.default_rng(0)
    for i in range(300):  # run_online's steps, one impression at a time
        assert ts.steady(traffic, i, 300) == 1
        pmf = ts.pmf(traffic, i, i + 1)
        arm = draw(rng, pmf)
        prop = pmf[0, arm[0]]
        assert 0 < prop <= 1 and prop == ts.probabilities[arm[0]]
        ts.learn(traffic, i, i + 1, arm, traffic.outcomes[i, arm], np.array([prop]))
    assert ts.probabilities.sum() == pytest.approx(1.0)
    assert ts.decision() == 1
    # the exact propensities of bandit.thompson for the learner's counts
    n, s = ts.learner.n[0].sum(axis=0), ts.learner.s[0].sum(axis=0)
    np.testing.assert_allclose(ts.probabilities, ts.sampler.action_probabilities(ts.sampler.posterior(n, s)))


def test_thompson_refreshes_every_refresh_impressions():
    ts = ThompsonOnline([2], refresh=40)
    traffic = CLASSIC.impressions(np.random.default_rng(1), 100)
    run = run_online(ts, traffic, np.random.default_rng(0))
    assert ts.learner.refreshes == 1 + 100 // 40  # the initial one, then one per 40 impressions
    assert np.allclose(run.propensity[:40], 0.5)  # no counts yet: both artworks equally likely
    block = run.propensity[40:80][run.action[40:80] == 0]
    assert len(np.unique(block)) == 1 and block[0] != 0.5  # refreshed once, then stale for 40


def test_vw_learns_the_better_artwork_online():
    """Without features VW is a context-free bandit: on 10% vs 50% it must end up on the 50% one."""
    result = compare_policies(BernoulliArms((0.1, 0.5)), horizon=1_500, seeds=[0, 1], include=("vw",))
    vw = result.policy("vw")
    assert [r.cumulative_regret.shape for r in vw.runs] == [(1_500,), (1_500,)]
    uniform_regret = 0.5 * 0.4 * 1_500  # showing both artworks half the time each
    assert vw.regret < 0.25 * uniform_regret and vw.best_share > 0.8


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"env": None, "horizon": 0}, "horizon"),
        ({"env": None, "seeds": []}, "seeds"),
        ({"env": None, "include": ("ab", "greedy")}, "unknown policies"),
        ({"env": BernoulliArms((0.2, 0.2))}, "mde"),
    ],
)
def test_bad_comparison_arguments(kwargs, words):
    env = kwargs.pop("env") or CLASSIC
    with pytest.raises(SimulationError, match=words):
        compare_policies(env, **kwargs)


@pytest.mark.parametrize(("ctrs", "words"), [((0.3,), "two"), ((0.2, 1.5), "[0, 1]")])
def test_bad_environment(ctrs, words):
    with pytest.raises(SimulationError, match=words.replace("[", r"\[").replace("]", r"\]")):
        BernoulliArms(ctrs)


def test_cli_compare_json_plot_and_progress(tmp_path, capsys):
    png = tmp_path / "regret.png"
    code = main(["compare", "--horizon", "1500", "--seeds", "2", "--policies", "ab,thompson", "--json", "--plot", str(png)])
    assert code == 0
    captured = capsys.readouterr()
    out = json.loads(captured.out)
    assert set(out["policies"]) == {"ab", "thompson"}
    for summary in out["policies"].values():
        assert {"clicks", "regret", "best_share", "decision_time"} <= set(summary)
    assert out["best_arm"] == "B"
    assert "2/4 runs" in captured.err and "4/4 runs" in captured.err
    assert "left)" in captured.err.split("2/4 runs")[1].split("\r")[0]  # the time left, once a run is done
    assert png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--ctrs", "0.3"], "two artworks"),
        (["--ctrs", "a,b"], "--ctrs"),
        (["--policies", "ab,greedy"], "unknown policies"),
        (["--seeds", "0"], "--seeds"),
    ],
)
def test_cli_compare_bad_input(capsys, argv, words):
    assert main(["compare", "--horizon", "100", *argv]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and words in err and "\n" not in err


@pytest.fixture(scope="module")
def personalized_comparison():
    """Comedy fans 60% / action fans 40% over 6,000 impressions, three seeds (about 3 s: Thompson
    sampling refreshes every 50 impressions, as the service's counts snapshot does)."""
    return compare_policies(PersonalizedArms(), horizon=6_000, seeds=range(3), ts_refresh=50)


def test_vw_personalizes_with_lower_regret_than_ab_and_thompson(personalized_comparison):
    result = personalized_comparison
    assert result.notes == ()
    ab, ts, vw = (result.policy(name) for name in ("ab", "thompson", "vw"))
    # Margins checked on seeds 0-39 at this horizon: VW's regret was below both others' on every
    # seed, and any three seeds' mean at most 0.77 of the lower of the two (here about 0.57).
    assert vw.regret < 0.85 * min(ab.regret, ts.regret)
    for v, a, t in zip(vw.runs, ab.runs, ts.runs, strict=True):
        assert v.regret < min(a.regret, t.regret)
    assert vw.best_share > max(ab.best_share, ts.best_share)
    assert vw.ctr > max(ab.ctr, ts.ctr)


def test_one_artwork_for_everybody_cannot_beat_the_per_group_oracle(personalized_comparison):
    env, horizon = personalized_comparison.env, personalized_comparison.horizon
    assert env.arms[env.best] == "a-comedic" and env.oracle_ctr == pytest.approx(0.30)
    ab = personalized_comparison.policy("ab")
    assert all(r.first_decision == env.best for r in ab.runs)  # it ships the best fixed artwork...
    # ...which still loses 0.15 on every action fan's impression (40% of traffic) once shipped
    shipped = horizon - personalized_comparison.ab_n_per_arm * len(env.arms)
    assert ab.regret >= 0.9 * 0.4 * 0.15 * shipped


def test_personalized_traffic_and_regret_accounting():
    env = PersonalizedArms(comedy_share=0.6, n_profiles=200)
    traffic = env.impressions(np.random.default_rng(3), 20_000)
    comedy = np.isclose(traffic.ctr[:, 0], 0.30)  # comedy fans: the comedic artwork at 30%
    assert comedy.mean() == pytest.approx(0.6, abs=0.015)
    assert traffic.outcomes[comedy].mean(axis=0) == pytest.approx([0.30, 0.15, 0.10, 0.10, 0.10], abs=0.015)
    assert all(c["profile"]["affinities"]["comedy"] > c["profile"]["affinities"]["action"] for c, fan in zip(traffic.contexts, comedy, strict=True) if fan)
    run = run_policy(FixedPolicy.always(0, 5), env, traffic, np.random.default_rng(4))
    assert run.regret == pytest.approx(0.15 * np.sum(~comedy))  # the comedic artwork costs only action fans
    assert run.best_share == pytest.approx(comedy.mean())


def test_cli_compare_personalized_json_and_plot(tmp_path, capsys):
    png = tmp_path / "regret.png"
    argv = ["compare", "--scenario", "personalized", "--horizon", "600", "--seeds", "1", "--json", "--plot", str(png)]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["scenario"] == "personalized" and out["best_arm"] == "a-comedic"
    assert out["oracle_ctr"] == pytest.approx(0.30) and set(out["groups"]) == {"comedy", "action"}
    assert {"clicks", "ctr", "regret", "best_share"} <= set(out["policies"]["vw"])
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert main(["compare", "--scenario", "personalized", "--horizon", "600", "--seeds", "1", "--policies", "ab"]) == 0
    table = capsys.readouterr().out
    assert "oracle" in table and "CTR" in table
    assert main(["compare", "--scenario", "personalized", "--ctrs", "0.2,0.3"]) == 1
    assert "--ctrs" in capsys.readouterr().err
