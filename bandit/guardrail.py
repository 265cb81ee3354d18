"""Clickbait guardrail: does the artwork that leads on clicks trail on play-through?

Play-through is plays per click. An artwork is flagged when both one-sided two-proportion
z-tests (pooled variance) reject at ``alpha``: its click rate is higher than the other artworks'
pooled click rate, and its play-through is lower than theirs. Flagging on both is an
intersection-union test: its false-flag rate is at most ``alpha`` (the p-value is the larger one).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

from bandit.errors import BanditInputError


@dataclass(frozen=True)
class ClickbaitCheck:
    leader: int | None  # index of the artwork with the highest click rate (None: no clicks yet)
    click_p: float  # one-sided p-value: the leader's click rate is higher than the rest's
    play_through_p: float  # one-sided p-value: the leader's play-through is lower than the rest's
    flagged: bool

    @property
    def p_value(self) -> float:
        return max(self.click_p, self.play_through_p)


def one_sided_z(successes_a: float, trials_a: float, successes_b: float, trials_b: float) -> float:
    """p-value of H1: rate a > rate b (pooled two-proportion z-test; 1.0 without data)."""
    if trials_a <= 0 or trials_b <= 0:
        return 1.0
    pooled = (successes_a + successes_b) / (trials_a + trials_b)
    var = pooled * (1 - pooled) * (1 / trials_a + 1 / trials_b)
    if var <= 0:
        return 1.0
    z = (successes_a / trials_a - successes_b / trials_b) / np.sqrt(var)
    return float(norm.sf(z))


def clickbait_check(impressions, clicks, plays, alpha: float = 0.01) -> ClickbaitCheck:
    """Per artwork counts (arrays of equal length): impressions, clicks, plays (plays are
    capped at clicks: play-through is a share of clicks)."""
    n, c, p = (np.asarray(x, dtype=float) for x in (impressions, clicks, plays))
    if not n.shape == c.shape == p.shape or n.ndim != 1:
        raise BanditInputError(f"impressions, clicks and plays must be 1-D arrays of one length, got {n.shape}, {c.shape}, {p.shape}")
    if np.any(n < 0) or np.any(c < 0) or np.any(p < 0):
        raise BanditInputError("counts must be non-negative")
    if not 0 < alpha < 1:
        raise BanditInputError(f"alpha must be in (0, 1), got {alpha!r}")
    p = np.minimum(p, c)
    rates = np.divide(c, n, out=np.zeros_like(c), where=n > 0)
    if len(n) < 2 or not c.any():
        return ClickbaitCheck(None, 1.0, 1.0, False)
    lead = int(np.argmax(rates))
    rest = np.arange(len(n)) != lead
    click_p = one_sided_z(c[lead], n[lead], c[rest].sum(), n[rest].sum())
    # lower play-through of the leader = higher play-through of the rest
    through_p = one_sided_z(p[rest].sum(), c[rest].sum(), p[lead], c[lead])
    return ClickbaitCheck(lead, click_p, through_p, max(click_p, through_p) < alpha)
