"""Per-title arm statistics for ``/stats`` (and the dashboard): pure functions of the counters."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from bandit.guardrail import clickbait_check
from bandit.segments import SEGMENTS
from bandit.thompson import ThompsonSampling, expected_max, ts_propensities
from service.catalog import Title
from service.store import ArmCounts


def _arm_rows(ts: ThompsonSampling, title: Title, n: list, s: list, r: list | None, posterior) -> list[dict]:
    lo, hi = posterior.interval(0.95)
    mean = posterior.mean
    rows = []
    for i, art in enumerate(title.artwork_ids):
        row = {
            "artwork": art,
            "impressions": int(n[i]),
            "reward_sum": round(float(s[i]), 6),
            "ctr": (float(s[i]) / n[i]) if n[i] else None,
            "posterior_mean": float(mean[i]),
            "ci95": [float(lo[i]), float(hi[i])],
        }
        if r is not None:
            row["rewards"] = int(r[i])
        rows.append(row)
    return rows


def title_stats(ts: ThompsonSampling, title: Title, counts: ArmCounts, recent: Mapping[str, int], now: float = 0.0) -> dict:
    """``recent``: impressions per artwork in the last RECENT_TRAFFIC_MINUTES. Posteriors are the
    bandit's: from the counters decayed to ``now`` for a title with a half-life."""
    arts = title.artwork_ids
    n, s = counts.title_arrays(arts)
    r = [counts.rewards.get(a, 0) for a in arts]
    learned = counts.decayed(now, title.half_life_s) if title.half_life_s else counts
    posterior = ts.posterior(*learned.title_arrays(arts))
    rows = _arm_rows(ts, title, n, s, r, posterior)
    recent_total = sum(recent.values())
    probs = ts.action_probabilities(posterior) if title.policy == "thompson" else None
    for i, row in enumerate(rows):
        row["tags"] = list(title.artworks[i].tags)
        row["recent_share"] = (recent.get(row["artwork"], 0) / recent_total) if recent_total else None
        row["share"] = (n[i] / sum(n)) if sum(n) else None
        if probs is not None:
            row["ts_probability"] = float(probs[i])
    _signal_rows(rows, counts, n)
    prob_best = ts_propensities(posterior.alpha, posterior.beta)
    leader = int(np.argmax(prob_best))
    for row, p in zip(rows, prob_best, strict=True):
        row["probability_best"] = float(p)
    segments = {}
    for seg in SEGMENTS:
        n_g, s_g = counts.segment_arrays(seg, arts)
        if not any(n_g):
            continue
        seg_post = ts.segment_posterior(*learned.title_arrays(arts), *learned.segment_arrays(seg, arts))
        seg_r = [counts.segments.get(seg, {}).get(a, (0, 0.0, 0))[2] for a in arts]
        segments[seg] = _arm_rows(ts, title, n_g, s_g, seg_r, seg_post)
    return {
        "title": title.id,
        "policy": title.policy,
        "default": title.default,
        "impressions": int(sum(n)),
        "rewards": int(sum(r)),
        "reward_sum": round(float(sum(s)), 6),
        "recent_decisions": recent_total,
        "half_life_s": title.half_life_s,
        "reward_signal": title.reward_signal,
        "guardrails": list(title.guardrails),
        "artworks": rows,
        "segments": segments,
        "winner": _winner(title, posterior, prob_best, leader),
        "clickbait": _clickbait(title, counts, n),
    }


# A winner has emerged when one artwork is best with at least this posterior probability.
WINNER_PROBABILITY = 0.95


def _winner(title: Title, posterior, prob_best, leader: int) -> dict:
    """The leader, its probability of being best, and the expected loss of stopping now (serving
    the leader for good): E[max_i theta_i] - E[theta_leader], in reward per impression."""
    loss = max(0.0, expected_max(posterior.alpha, posterior.beta) - float(posterior.mean[leader]))
    return {
        "artwork": title.artwork_ids[leader],
        "probability_best": float(prob_best[leader]),
        "expected_loss": loss,
        "emerged": bool(prob_best[leader] >= WINNER_PROBABILITY),
    }


def _signal_rows(rows: list[dict], counts: ArmCounts, n: list) -> None:
    """Per artwork: each signal's sum and rate per impression; click rate, quality-play rate
    and play-through (plays per click)."""
    for i, row in enumerate(rows):
        art = row["artwork"]
        sums = {sig: by_art.get(art, 0.0) for sig, by_art in counts.signals.items()}
        row["signals"] = {sig: {"sum": round(v, 6), "rate": (v / n[i]) if n[i] else None} for sig, v in sorted(sums.items())}
        clicks, plays = sums.get("click", 0.0), sums.get("play", 0.0)
        row["click_rate"] = (clicks / n[i]) if n[i] else None
        row["quality_play_rate"] = (plays / n[i]) if n[i] else None
        row["play_through"] = (plays / clicks) if clicks else None


def _clickbait(title: Title, counts: ArmCounts, n: list) -> dict:
    """The artwork leading on clicks, flagged when it trails on play-through (bandit.guardrail)."""
    arts = title.artwork_ids
    clicks = [counts.signals.get("click", {}).get(a, 0.0) for a in arts]
    plays = [counts.signals.get("play", {}).get(a, 0.0) for a in arts]
    check = clickbait_check(n, clicks, plays)
    return {
        "artwork": None if check.leader is None else arts[check.leader],
        "flagged": check.flagged,
        "p_value": check.p_value,
    }
