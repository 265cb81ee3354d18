"""Deterministic hash assignment: shares, SRM, salt reshuffling, stability across processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bandit.ab_assignment import BUCKETS, ABSplit, SplitError, assign, bucket_of
from replay.abtest import srm_check

ROOT = Path(__file__).resolve().parents[1]
PROFILES = [f"profile-{i}" for i in range(100_000)]


def arm_indices(split: ABSplit, profiles: list[str]) -> np.ndarray:
    return np.fromiter((assign(split, p).index for p in profiles), dtype=int, count=len(profiles))


@pytest.fixture(scope="module")
def fifty_fifty() -> np.ndarray:
    return arm_indices(ABSplit.equal(("A", "B"), "exp-1"), PROFILES)


def test_100k_profiles_split_50_50_within_1_percent(fifty_fifty):
    shares = np.bincount(fifty_fifty, minlength=2) / len(PROFILES)
    assert np.all(np.abs(shares - 0.5) < 0.01)


def test_100k_profiles_split_does_not_alarm_srm(fifty_fifty):
    counts = np.bincount(fifty_fifty, minlength=2)
    assert not srm_check(["A", "B"], counts, [0.5, 0.5]).alarm


@pytest.mark.parametrize("weights", [(0.7, 0.3), (0.2, 0.3, 0.5), (0.9, 0.05, 0.05)])
def test_weighted_split_shares_and_propensities(weights):
    arms = tuple(f"a{i}" for i in range(len(weights)))
    split = ABSplit(arms, weights, "exp-w")
    idx = arm_indices(split, PROFILES[:40_000])
    shares = np.bincount(idx, minlength=len(arms)) / 40_000
    assert np.all(np.abs(shares - np.array(weights)) < 0.01)
    assert not srm_check(arms, np.bincount(idx, minlength=len(arms)), weights).alarm
    for i, w in enumerate(weights):
        first = PROFILES[int(np.flatnonzero(idx == i)[0])]
        assert assign(split, first).propensity == pytest.approx(w)


def test_zero_weight_arm_is_never_assigned():
    split = ABSplit(("off", "A", "B", "off2"), (0.0, 0.5, 0.5, 0.0), "exp-z")
    idx = arm_indices(split, PROFILES[:20_000])
    assert set(np.unique(idx)) == {1, 2}


def test_changing_the_salt_reshuffles(fifty_fifty):
    other = arm_indices(ABSplit.equal(("A", "B"), "exp-2"), PROFILES[:20_000])
    agreement = np.mean(other == fifty_fifty[:20_000])
    assert abs(agreement - 0.5) < 0.02  # independent of the old assignment, not a relabelling


def test_assignment_is_stable_across_calls_and_processes(fifty_fifty):
    sample = PROFILES[:: 10_000]
    code = (
        "import json,sys; from bandit.ab_assignment import ABSplit, assign; "
        "s = ABSplit.equal(('A','B'), 'exp-1'); "
        "print(json.dumps([assign(s, p).index for p in json.loads(sys.argv[1])]))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}  # Python's own str hash must not matter
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(sample)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True)
    assert json.loads(proc.stdout) == fifty_fifty[:: 10_000].tolist()
    split = ABSplit.equal(("A", "B"), "exp-1")
    assert [assign(split, p) for p in sample] == [assign(split, p) for p in sample]


def test_buckets_are_uniform():
    buckets = np.fromiter((bucket_of("exp-u", p) for p in PROFILES), dtype=int, count=len(PROFILES))
    assert buckets.min() >= 0 and buckets.max() < BUCKETS
    deciles = np.bincount(buckets * 10 // BUCKETS, minlength=10)
    assert not srm_check([str(i) for i in range(10)], deciles, [0.1] * 10).alarm


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"arms": (), "weights": (), "salt": "s"}, "arms"),
        ({"arms": ("A", "A"), "weights": (0.5, 0.5), "salt": "s"}, "distinct"),
        ({"arms": ("A", "B"), "weights": (1.0,), "salt": "s"}, "weights"),
        ({"arms": ("A", "B"), "weights": (-1.0, 2.0), "salt": "s"}, "weights"),
        ({"arms": ("A", "B"), "weights": (0.5, 0.5), "salt": ""}, "salt"),
    ],
)
def test_bad_split_is_rejected(kwargs, words):
    with pytest.raises(SplitError, match=words):
        ABSplit(**kwargs)


def test_empty_unit_is_rejected():
    with pytest.raises(SplitError, match="unit_id"):
        assign(ABSplit.equal(("A", "B"), "s"), "")
