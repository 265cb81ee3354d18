"""Per-title arm statistics for ``/stats`` (and the dashboard): pure functions of the counters."""

from __future__ import annotations

from collections.abc import Mapping

from bandit.thompson import SEGMENTS, ThompsonSampling
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


def title_stats(ts: ThompsonSampling, title: Title, counts: ArmCounts, recent: Mapping[str, int]) -> dict:
    """``recent``: decisions per artwork in the last RECENT_TRAFFIC_MINUTES."""
    arts = title.artwork_ids
    n, s = counts.title_arrays(arts)
    r = [counts.rewards.get(a, 0) for a in arts]
    posterior = ts.posterior(n, s)
    rows = _arm_rows(ts, title, n, s, r, posterior)
    recent_total = sum(recent.values())
    probs = ts.action_probabilities(posterior) if title.policy == "thompson" else None
    for i, row in enumerate(rows):
        row["tags"] = list(title.artworks[i].tags)
        row["recent_share"] = (recent.get(row["artwork"], 0) / recent_total) if recent_total else None
        row["share"] = (n[i] / sum(n)) if sum(n) else None
        if probs is not None:
            row["ts_probability"] = float(probs[i])
    segments = {}
    for seg in SEGMENTS:
        n_g, s_g = counts.segment_arrays(seg, arts)
        if not any(n_g):
            continue
        seg_post = ts.segment_posterior(n, s, n_g, s_g)
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
        "artworks": rows,
        "segments": segments,
    }
