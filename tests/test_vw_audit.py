"""VW feature contributions (``bandit.vw_audit``): they add up to VW's own score and carry the
names of ``bandit.vw_features``' example, never hashes."""

from __future__ import annotations

import numpy as np
import pytest

from bandit.vw_audit import CONSTANT_NAME, AuditError, audit
from bandit.vw_features import decision_context, to_example
from bandit.vw_policy import VWConfig, VWModel
from replay.simulation import personalized as sim
from replay.simulation.online import run_online
from replay.simulation.vw import VWOnline


@pytest.fixture(scope="module")
def trained():
    rng = np.random.default_rng(3)
    profiles = sim.make_profiles(rng, 100)
    traffic = sim.make_traffic(rng, len(profiles), 3_000)
    model = VWModel.new()
    run_online(VWOnline(sim.artwork_ids(), sim.artwork_tags(), model=model), sim.impressions(profiles, traffic), np.random.default_rng(0))
    yield model, profiles
    model.close()


def _example(profile, request):
    ctx = decision_context(profile, request, "regular", sim.artwork_tags())
    return to_example(ctx, sim.artwork_ids())


def _tokens(example):
    """Every feature of the example as VW's audit names it: ``namespace^name``."""
    names = set()
    for line in (example.shared, *example.actions):
        for part in line.split("|")[1:]:
            ns, *feats = part.split()
            names.update(f"{ns}^{f.partition(':')[0]}" for f in feats)
    return names


@pytest.mark.parametrize("request_ctx", [{"device": "tv", "hour": "21"}, {}, {"country": "FR"}])
def test_contributions_sum_to_the_score_vw_predicts_for_each_artwork(trained, request_ctx):
    model, profiles = trained
    for p in profiles[:5]:
        ex = _example(p.features, request_ctx)
        audits = model.audit(ex.lines())
        vw_scores = model.scores(ex.lines())
        assert len(audits) == len(sim.artwork_ids())
        assert np.ptp(vw_scores) > 1e-3  # a trained model tells the artworks apart
        for a, s in zip(audits, vw_scores, strict=True):
            assert a.score == pytest.approx(s, abs=1e-5)
            assert sum(c.contribution for c in a.contributions) == pytest.approx(a.score, abs=1e-9)


def test_contribution_names_are_the_example_features_and_their_interactions(trained):
    model, profiles = trained
    ex = _example(profiles[0].features, {"device": "tv"})
    tokens = _tokens(ex)
    for i, a in enumerate(model.audit(ex.lines())):
        names = [c.feature for c in a.contributions]
        assert CONSTANT_NAME in names and f"A^art={sim.artwork_ids()[i]}" in names
        for name in names:
            parts = name.split("*")
            assert name == CONSTANT_NAME or all(p in tokens for p in parts), name
            if len(parts) == 2:  # only the model's -q UA / -q CA products
                assert parts[0][0] in "UC" and parts[1].startswith("A^")
        assert [abs(c.contribution) for c in a.contributions] == sorted((abs(c.contribution) for c in a.contributions), reverse=True)


def test_a_model_with_interactions_the_audit_does_not_know_is_refused():
    model = VWModel(__import__("vowpalwabbit").Workspace(VWConfig().arguments() + " --cubic UCA"))
    try:
        with pytest.raises(AuditError, match="cubic"):
            audit(model._vw, _example(None, {}).lines())
    finally:
        model.close()
