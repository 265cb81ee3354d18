"""The engine's Thompson action distributions: computed once per distinct posterior, and equal
to computing them afresh for every segment (the logged propensities stay exact)."""

from __future__ import annotations

import numpy as np

from bandit.segments import SEGMENTS
from bandit.thompson import ActionSampler
from service.store import ArmCounts

TITLE = "stranger-lights"


def counters(artworks, seen: dict[str, int]) -> ArmCounts:
    """Counters where only the segments in ``seen`` (segment -> impressions of each artwork)
    have data of their own; the more impressions, the higher the reward rate, so segments differ
    (and past the prior's 200 pseudo-impressions a segment's posterior is not the title's)."""
    raw: dict[str, str] = {}
    for i, a in enumerate(artworks):
        s_title = 0.0
        for seg, n in seen.items():
            rewards = (i + 1) * n / 1000.0
            raw[f"n|{seg}|{a}"], raw[f"s|{seg}|{a}"] = str(n), repr(rewards)
            s_title += rewards
        raw[f"s|{a}"] = repr(s_title)
    return ArmCounts.from_hash(raw)


def fresh(engine, title, counts: ArmCounts, segment: str) -> tuple[float, ...]:
    n_t, s_t = counts.title_arrays(title.artwork_ids)
    n_g, s_g = counts.segment_arrays(segment, title.artwork_ids)
    posterior = engine.thompson.segment_posterior(n_t, s_t, n_g, s_g)
    return ActionSampler.of(engine.thompson.action_probabilities(posterior)).probabilities


def test_every_segment_gets_the_distribution_computed_afresh_and_empty_ones_share_it(make_app):
    engine = make_app().extensions["engine"]
    title = engine.catalog.get()[TITLE]
    counts = counters(title.artwork_ids, {"new": 400, "power": 900})
    engine.counts.put({TITLE: counts})
    samplers = {seg: engine.action_sampler(title, seg) for seg in SEGMENTS}
    for seg in SEGMENTS:
        assert samplers[seg].probabilities == fresh(engine, title, counts, seg)  # the same bits
    assert samplers["low"] is samplers["regular"]  # no data of their own: one computation
    assert samplers["new"] is not samplers["low"] and samplers["power"] is not samplers["new"]
    assert not np.allclose(samplers["new"].probabilities, samplers["low"].probabilities)


def test_a_refresh_with_unchanged_counters_reuses_the_distribution_and_a_change_recomputes_it(make_app):
    engine = make_app().extensions["engine"]
    title = engine.catalog.get()[TITLE]
    engine.counts.put({TITLE: counters(title.artwork_ids, {"new": 400})})
    before = engine.action_sampler(title, "new")
    engine.counts.put({TITLE: counters(title.artwork_ids, {"new": 400})})  # a new snapshot, same counters
    assert engine.action_sampler(title, "new") is before
    moved = counters(title.artwork_ids, {"new": 401})
    engine.counts.put({TITLE: moved})
    after = engine.action_sampler(title, "new")
    assert after is not before and after.probabilities == fresh(engine, title, moved, "new")
