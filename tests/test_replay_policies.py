"""Policies: table files, the A/B split, Thompson replay against on-policy Thompson."""

from __future__ import annotations

import json

import numpy as np
import pytest

from replay.cli import main
from replay.estimators import Replay
from replay.evaluation import policy_input
from replay.logs import encode_logs, load_logs, validate_logs
from replay.policies import read_policy_table
from replay.policy_base import PolicyError, PolicyOptions
from replay.policy_registry import POLICIES, make_policy
from replay.simulation.environments import segmented_titles, two_artworks
from replay.simulation.online import run_online
from replay.simulation.simulated_logs import simulate_logs
from replay.simulation.thompson import ThompsonLearner, ThompsonOnline
from tests.conftest import CLUSTER


def logs_of(env, n, seed=0, logging="uniform"):
    return encode_logs(validate_logs(simulate_logs(env, np.random.default_rng(seed), n, logging)))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("title,artwork,probability\nt1,a1,0.5\nt1,a2,0.4\n", "sum to 0.9"),
        ("title,artwork,probability\nt1,a1,1.5\n", "line 2, column 'probability'"),
        ("title,artwork,probability\nt1,a1,x\n", "not a number"),
        ("title,artwork,probability\nt1,a1,0.5\nt1,a1,0.5\n", "listed twice"),
        ("title,art,probability\nt1,a1,1\n", "needs columns"),
    ],
)
def test_bad_policy_tables(tmp_path, text, message):
    path = tmp_path / "p.csv"
    path.write_text(text)
    with pytest.raises(PolicyError, match=message):
        read_policy_table(path)


def test_table_policy_probabilities_and_absent_artworks(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("title,artwork,probability\nt1,a2,1\n")
    logs = logs_of(two_artworks(), 200)
    out = make_policy(f"table:{path}").evaluate(logs, np.random.default_rng(0))
    np.testing.assert_array_equal(out.pi, np.tile([0.0, 1.0], (200, 1)))
    np.testing.assert_array_equal(out.pi_chosen, (logs.action == 1).astype(float))


def test_table_policy_missing_title_is_an_error(tmp_path):
    path = tmp_path / "p.csv"
    path.write_text("title,artwork,probability\nother,a1,1\n")
    with pytest.raises(PolicyError, match="title 't1'"):
        make_policy(f"table:{path}").evaluate(logs_of(two_artworks(), 10), np.random.default_rng(0))


def test_uniform_policy_over_candidates():
    logs = logs_of(segmented_titles(np.random.default_rng(0), n_artworks=4), 100)
    out = make_policy("uniform").evaluate(logs, np.random.default_rng(0))
    np.testing.assert_allclose(out.pi, 0.25)


def test_ab_policy_matches_what_the_live_service_served(app, redis_url, key_prefix, tmp_path):
    """Decisions of a running service (configured salt and unequal weights) exported and
    replayed: ``ab:CATALOG`` puts all its mass on the served artwork of every row; plain ``ab``
    (the default equal split salted by title) does not, so the check can fail."""
    arts = ("x1", "x2", "x3")
    entry = {"id": "split", "artworks": [{"id": a, "tags": ["t"]} for a in arts], "default": "x1", "policy": "ab",
             "ab": {"salt": "exp-7", "weights": {"x1": 0.2, "x2": 0.3, "x3": 0.5}}}
    client = app.test_client()
    put = client.put("/catalog/split", json={k: v for k, v in entry.items() if k != "id"}, headers={"Authorization": "Bearer test-token"})
    assert put.status_code in (200, 201), put.get_json()
    served = {}
    for i in range(300):
        d = client.get(f"/artwork?profile=u{i}&title=split").get_json()
        assert d["policy"] == "ab"
        served[f"u{i}"] = d["artwork"]
    logs_path = tmp_path / "ab.parquet"
    assert main(["export", "--redis", redis_url, "--prefix", key_prefix, "--out", str(logs_path), "--window", "0.001",
                 *(["--cluster"] if CLUSTER else [])]) == 0
    catalog = tmp_path / "catalog.json"
    catalog.write_text(json.dumps({"titles": [entry]}))
    frame = load_logs(logs_path)
    logs = encode_logs(frame)
    profiles = frame["profile"].to_numpy()[logs.order]
    chosen = [logs.arms[0][j] for j in np.argmax(make_policy(f"ab:{catalog}").evaluate(logs, np.random.default_rng(0)).pi, axis=1)]
    assert chosen == [served[p] for p in profiles]
    equal = make_policy("ab").evaluate(logs, np.random.default_rng(0)).pi
    assert (np.argmax(equal, axis=1) != [logs.arms[0].index(served[p]) for p in profiles]).mean() > 0.3


def test_ab_policy_with_a_bad_catalog_is_an_error(tmp_path):
    bad = tmp_path / "c.json"
    bad.write_text("{not json")
    with pytest.raises(PolicyError, match="not valid JSON"):
        make_policy(f"ab:{bad}")


def test_logged_policy_is_on_policy_average():
    logs = logs_of(two_artworks(), 1_000, logging="thompson")
    out = make_policy("logged").evaluate(logs, np.random.default_rng(0))
    est = Replay().estimate(policy_input(logs, out, None))
    assert est.value == pytest.approx(logs.reward.mean())


def test_unknown_policy_is_an_error_naming_the_known_ones():
    with pytest.raises(PolicyError, match="unknown policy 'nope'; known: ab, logged, table, thompson, uniform, vw"):
        make_policy("nope")
    assert set(POLICIES) == {"uniform", "logged", "ab", "table", "thompson", "vw"}


def test_vw_replay_learns_the_better_artwork_and_a_bad_model_path_is_an_error(tmp_path):
    logs = logs_of(two_artworks((0.05, 0.6)), 3_000, seed=3)
    out = make_policy("vw").evaluate(logs, np.random.default_rng(0))
    np.testing.assert_allclose(out.pi.sum(axis=1), 1.0)
    assert 300 < out.accepted.sum() < logs.n  # replay accepts some rows, not all
    best = logs.arms[0].index("a2")
    assert out.pi[0, best] == pytest.approx(0.5) and out.pi[-500:, best].mean() > 0.85  # learned a2 from accepted rows
    with pytest.raises(PolicyError, match="vw:/no/such/model"):
        make_policy("vw:/no/such/model")
    junk = tmp_path / "junk.vw"
    junk.write_bytes(b"not a model")
    with pytest.raises(PolicyError, match="not a VW model"):
        make_policy(f"vw:{junk}")


@pytest.mark.parametrize("batch", [1, 3, 7])
def test_first_refresh_finds_the_batch_completing_event(batch):
    rng = np.random.default_rng(batch)
    learner = ThompsonLearner(PolicyOptions().thompson(), np.array([2, 2, 2]), 1, 2, False, batch)
    learner.pending[:] = rng.integers(0, batch, size=3)
    titles = rng.integers(3, size=40)
    expected, counts = -1, learner.pending.copy()
    for i, t in enumerate(titles):  # the slow, obvious way
        counts[t] += 1
        if counts[t] >= batch:
            expected = i
            break
    assert learner.first_refresh(titles) == expected


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_thompson_replay_matches_on_policy_thompson(seed):
    """Replay of TS on uniform logs gives the CTR an on-policy TS run of the same length gets.

    A replayed learning policy is one run of it: its value varies with the learning path as well
    as with the rewards, and the replay interval only covers the latter (in this simulator it is
    about 1.4 times too narrow). So the comparison uses the run-to-run spread of on-policy TS.
    """
    env = two_artworks((0.24, 0.30))
    logs = logs_of(env, 40_000, seed=seed)
    out = make_policy("thompson").evaluate(logs, np.random.default_rng(100 + seed))
    est = Replay().estimate(policy_input(logs, out, None))
    n_acc = int(est.ess)
    rng = np.random.default_rng(200 + seed)
    options = PolicyOptions()
    runs = np.array([run_online(ThompsonOnline(env.n_arms, len(env.segments), options.thompson(), options.ts_batch, use_segments=True),
                                env.impressions(rng, n_acc), rng).reward.mean() for _ in range(12)])
    spread = runs.std(ddof=1) * np.sqrt(1 + 1 / runs.size)
    assert abs(est.value - runs.mean()) < 3 * spread, (est, runs.mean(), spread)
    assert spread < 2 * est.se  # the Bernoulli part dominates: the interval is the right scale
    assert 0.27 < est.value < 0.30 + 3 * est.se  # it learned: better than uniform


def test_thompson_replay_is_reproducible_and_learns_per_segment():
    env = segmented_titles(np.random.default_rng(2), n_titles=2, n_artworks=3)
    logs = logs_of(env, 30_000, seed=1)
    a = make_policy("thompson").evaluate(logs, np.random.default_rng(9))
    b = make_policy("thompson").evaluate(logs, np.random.default_rng(9))
    np.testing.assert_array_equal(a.accepted, b.accepted)
    np.testing.assert_allclose(a.pi.sum(axis=1), 1.0)
    est = Replay().estimate(policy_input(logs, a, None))
    uniform_value = env.policy_value(np.full((2, 3), 1 / 3))
    assert est.ci[0] > uniform_value


def test_policy_frame_with_no_segment_column_uses_title_posterior():
    """Without segments every row of a title shares one distribution between refreshes; with
    them, each segment has its own, so the same logs give several distinct rows per refresh."""
    frame = simulate_logs(two_artworks(), np.random.default_rng(0), 2_000)
    batch = PolicyOptions().ts_batch
    no_seg = encode_logs(validate_logs(frame.drop(columns=["segment"])))
    out = make_policy("thompson").evaluate(no_seg, np.random.default_rng(0))
    assert not no_seg.has_segment and out.accepted.any()
    refreshes = out.accepted.sum() // batch + 1
    assert len(np.unique(out.pi.round(12), axis=0)) <= refreshes
    seg = encode_logs(validate_logs(frame))
    out_seg = make_policy("thompson").evaluate(seg, np.random.default_rng(0))
    assert len(np.unique(out_seg.pi.round(12), axis=0)) > out_seg.accepted.sum() // batch + 1
