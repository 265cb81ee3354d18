"""``GET /explain?profile=&title=``: why a profile gets the artwork it gets.

Computed from the same counters and the same code as a decision made now: for a ``thompson``
title, ``propensity`` is the distribution a decision would draw from and log (probability of
being best under the segment's posterior, mixed with TS_UNIFORM_MIX); ``ab`` and ``fixed`` give
their split (``ab``: the weights, as logged; the profile's arm is fixed); ``vw``, the model's pmf
for this profile and the request's other query parameters as context, with the named features
it was given and, per artwork, the model's score (predicted reward) with its ``TOP_CONTRIBUTIONS``
largest feature contributions by VW audit name (``bandit.vw_audit``: value x weight, summing
over all features to the score). Behind the ops token: it shows a profile's features.
"""

from __future__ import annotations

import time

import numpy as np
from flask import Blueprint, current_app, jsonify, request

from bandit.thompson import ts_propensities
from bandit.vw_audit import AuditError
from bandit.vw_features import to_example
from service.admin import require_ops_reader
from service.api import parse_context
from service.errors import StoreUnavailable
from service.ids import check_id
from service.redis_conn import STORE_ERRORS

bp = Blueprint("explain", __name__)

TOP_CONTRIBUTIONS = 5


@bp.get("/explain")
def explain():
    require_ops_reader()
    profile_id = check_id(request.args.get("profile"), "profile")
    engine = current_app.extensions["engine"]
    (title,) = engine.titles_for([check_id(request.args.get("title"), "title")])
    try:
        vw = [title.id] if title.policy == "vw" else []
        profile, counts, versions, _ = engine.store.read_state_with_models(profile_id, [title.id], vw)
    except STORE_ERRORS:
        raise StoreUnavailable() from None
    segment = profile.derived_segment if profile is not None else "new"
    arts = title.artwork_ids
    now = time.time()
    learned = counts[title.id].decayed(now, title.half_life_s) if title.half_life_s else counts[title.id]
    n_t, s_t = learned.title_arrays(arts)
    n_g, s_g = learned.segment_arrays(segment, arts)
    posterior = engine.thompson.segment_posterior(n_t, s_t, n_g, s_g)
    lo, hi = posterior.interval(0.95)
    best = ts_propensities(posterior.alpha, posterior.beta)
    serving = _serving_distribution(engine, title, posterior)
    vw_part = {}
    audits = None
    if title.policy == "vw":  # the model's pmf for this profile and the request's context
        engine.models.observe(versions, wait=True)
        choice = engine.models.choose(title, segment, profile, parse_context(request.args), np.random.default_rng(0))
        serving = choice.pmf
        vw_part = {"model_version": choice.model_version, "vw_features": {k: v for k, v in choice.context.items() if k != "vw.model"}}
        entry = engine.models.get(title.id)
        if choice.model_version and entry is not None and entry[0] == choice.model_version:
            try:
                audits = entry[1].audit(to_example(choice.context, arts).lines())
            except AuditError as exc:  # a model trained with features the audit cannot follow
                vw_part["vw_audit_error"] = str(exc)
    rows = [
        {
            "artwork": art,
            "impressions": float(n_g[i]) if any(n_g) else float(n_t[i]),  # decayed for a half-life
            "posterior_mean": float(posterior.mean[i]),
            "ci95": [float(lo[i]), float(hi[i])],
            "probability_best": float(best[i]),
            "propensity": None if serving is None else float(serving[i]),
            **({} if title.policy != "vw" else _vw_row(None if audits is None else audits[i])),
        }
        for i, art in enumerate(arts)
    ]
    return jsonify({
        "profile": profile_id,
        "title": title.id,
        "policy": title.policy,
        "segment": segment,
        "features": profile.to_json() if profile is not None else None,
        "reward_signal": title.reward_signal,
        "half_life_s": title.half_life_s,
        "as_of": now,  # decaying counters are read as of this time
        "artworks": rows,
        **vw_part,
    })


def _vw_row(audit) -> dict:
    """A ``vw`` artwork's score and largest contributions (None before the first model)."""
    if audit is None:
        return {"vw_score": None, "vw_contributions": []}
    return {
        "vw_score": audit.score,
        "vw_contributions": [
            {"feature": c.feature, "value": c.value, "weight": c.weight, "contribution": c.contribution}
            for c in audit.top(TOP_CONTRIBUTIONS)
        ],
    }


def _serving_distribution(engine, title, posterior) -> np.ndarray | None:
    """What a decision made now would draw from (``vw``: filled in from the model)."""
    if title.policy == "thompson":
        return engine.thompson.action_probabilities(posterior)
    if title.policy == "fixed":
        return np.array([1.0 if a == title.default else 0.0 for a in title.artwork_ids])
    if title.policy == "ab":  # the randomization unit is the profile: the logged propensity is the weight
        return np.array(title.ab_split().weights)
    return None
