"""Simulations with known truth for the artwork product features (``compare --scenario``):

- ``clickbait``: three artworks; the clickbait one has the highest click rate and the lowest
  play-through. Thompson sampling rewarded by clicks vs by quality plays: which artwork does
  each settle on (the one with the most traffic in the last fifth of the run)?
- ``drift``: two artworks whose click rates swap halfway. Thompson sampling with counters that
  never forget vs with a half-life (``bandit.decay``): impressions after the swap until 80% of
  a sliding window of traffic is on the new best artwork.
- ``sticky``: profiles keep the artwork of their first decision for a period and come back
  several times; the logging policy's propensities change halfway. IPS of "always show B",
  per impression with the propensity the policy had at each impression (naive), vs per first
  decision (the randomization unit) with the rewards of its period, which is the same as per
  impression with every repeat weighted by its first decision's propensity: bias against the truth.

Each run takes its own ``numpy.random.Generator``; results are frozen dataclasses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bandit.decay import decayed, growth_weight
from bandit.thompson import mix_uniform, ts_propensities
from replay.errors import ReplayError

UNIFORM_MIX = 0.01


def _ts_run(rng: np.random.Generator, horizon: int, rewards_of, refresh: int, half_life: float | None = None) -> np.ndarray:
    """Thompson sampling over ``horizon`` impressions; ``rewards_of(t, arms) -> rewards`` gives the
    rewards of a block of impressions starting at t. Probabilities are recomputed every ``refresh``
    impressions (as a worker's counters copy). Returns the arm shown at each impression."""
    k = rewards_of.k
    n = np.zeros(k)
    s = np.zeros(k)
    shown = np.empty(horizon, dtype=int)
    epoch = 0.0
    for t0 in range(0, horizon, refresh):
        if half_life is None:
            n_eff, s_eff = n, s
        else:
            n_eff, s_eff = decayed(n, t0, epoch, half_life), decayed(s, t0, epoch, half_life)
        p = mix_uniform(ts_propensities(1.0 + s_eff, 1.0 + n_eff - s_eff), UNIFORM_MIX)
        m = min(refresh, horizon - t0)
        arms = rng.choice(k, size=m, p=p)
        r = rewards_of(rng, t0, arms)
        w = np.ones(m) if half_life is None else 2.0 ** ((np.arange(t0, t0 + m) - epoch) / half_life)
        np.add.at(n, arms, w)
        np.add.at(s, arms, w * r)
        shown[t0 : t0 + m] = arms
        if half_life is not None and t0 - epoch > 40 * half_life:  # rebase, as the store does
            scale = 1.0 / growth_weight(t0, epoch, half_life)
            n, s, epoch = n * scale, s * scale, float(t0)
    return shown


# -- clickbait ---------------------------------------------------------------------------------

CLICKBAIT_ARMS = ("honest", "clickbait", "plain")
CLICK_RATES = (0.10, 0.16, 0.08)
PLAY_THROUGH = (0.60, 0.20, 0.50)  # quality plays per click


class _Signals:
    """Clicks, then a quality play with probability play-through; ``objective`` is the reward."""

    k = 3

    def __init__(self, objective: str):
        self.objective = objective

    def __call__(self, rng, t0, arms):
        clicks = rng.random(len(arms)) < np.take(CLICK_RATES, arms)
        plays = clicks & (rng.random(len(arms)) < np.take(PLAY_THROUGH, arms))
        return (clicks if self.objective == "click" else plays).astype(float)


@dataclass(frozen=True)
class ClickbaitResult:
    objective: str
    seeds: int
    picks: dict[str, float]  # artwork -> share of seeds that settled on it
    plays_per_1000: float  # expected quality plays per 1000 impressions (true rates)
    clicks_per_1000: float


def clickbait(objective: str, seeds: int, seed: int = 0, horizon: int = 6000, refresh: int = 50) -> ClickbaitResult:
    picks = np.zeros(3)
    plays = clicks = 0.0
    for i in range(seeds):
        shown = _ts_run(np.random.default_rng(seed + i), horizon, _Signals(objective), refresh)
        tail = shown[-horizon // 5 :]
        picks[np.bincount(tail, minlength=3).argmax()] += 1
        share = np.bincount(shown, minlength=3) / horizon
        clicks += 1000 * float(share @ CLICK_RATES)
        plays += 1000 * float(share @ (np.array(CLICK_RATES) * PLAY_THROUGH))
    return ClickbaitResult(objective, seeds, dict(zip(CLICKBAIT_ARMS, (picks / seeds).tolist(), strict=True)), plays / seeds, clicks / seeds)


# -- drift -------------------------------------------------------------------------------------

DRIFT_RATES = (0.12, 0.06)  # before the swap; after it the two are exchanged
RECOVERY_SHARE = 0.8
RECOVERY_WINDOW = 500


class _Swap:
    k = 2

    def __init__(self, swap_at: int):
        self.swap_at = swap_at

    def __call__(self, rng, t0, arms):
        t = np.arange(t0, t0 + len(arms))
        best = np.where(t < self.swap_at, 0, 1)
        rate = np.where(arms == best, DRIFT_RATES[0], DRIFT_RATES[1])
        return (rng.random(len(arms)) < rate).astype(float)


@dataclass(frozen=True)
class DriftResult:
    half_life: float | None  # in impressions; None: counters never forget
    seeds: int
    recovery: float  # mean impressions after the swap until 80% of the window is on the new best
    censored: int  # runs that never got there (counted as the rest of the run: a lower bound)
    share_new_best: float  # share of post-swap impressions on the new best


def drift(half_life: float | None, seeds: int, seed: int = 0, horizon: int = 20_000, refresh: int = 50) -> DriftResult:
    swap = horizon // 2
    times, censored, shares = [], 0, []
    for i in range(seeds):
        shown = _ts_run(np.random.default_rng(seed + i), horizon, _Swap(swap), refresh, half_life)
        after = (shown[swap:] == 1).astype(float)
        window = np.convolve(after, np.ones(RECOVERY_WINDOW), "valid") / RECOVERY_WINDOW
        hit = np.flatnonzero(window >= RECOVERY_SHARE)
        if hit.size:
            times.append(hit[0] + RECOVERY_WINDOW)
        else:
            times.append(horizon - swap)
            censored += 1
        shares.append(after.mean())
    return DriftResult(half_life, seeds, float(np.mean(times)), censored, float(np.mean(shares)))


# -- sticky ------------------------------------------------------------------------------------

STICKY_CTRS = (0.05, 0.10)  # A, B; the target policy always shows B: its value is 0.10
EARLY_P_B, LATE_P_B = 0.2, 0.8  # the logging policy's P(B) before and after halfway


@dataclass(frozen=True)
class StickyResult:
    """Bias (mean over data sets - truth) in units of the estimator's standard error on one log
    (the spread of its estimates over data sets); ``*_mc_se`` is the Monte Carlo error of the mean."""

    seeds: int
    truth: float
    naive_mean: float
    naive_se: float
    sticky_mean: float
    sticky_se: float

    @property
    def naive_bias_in_se(self) -> float:
        return abs(self.naive_mean - self.truth) / self.naive_se

    @property
    def sticky_bias_in_se(self) -> float:
        return abs(self.sticky_mean - self.truth) / self.sticky_se

    @property
    def sticky_mc_se(self) -> float:
        return self.sticky_se / np.sqrt(self.seeds)


def sticky_ips(rng: np.random.Generator, profiles: int = 20_000, visits: int = 4, period: float = 0.4) -> tuple[float, float]:
    """One logged data set; (naive, sticky) IPS estimates of "always B" per impression.

    Each profile's first visit is uniform in [0, 1); its ``visits - 1`` repeats come within
    ``period`` after it and show the first decision's artwork. The logging policy draws B with
    probability EARLY_P_B before 0.5 and LATE_P_B after.
    """
    first = rng.random(profiles)
    p_first = np.where(first < 0.5, EARLY_P_B, LATE_P_B)
    is_b = rng.random(profiles) < p_first
    times = np.concatenate([first[:, None], first[:, None] + period * rng.random((profiles, visits - 1))], axis=1)
    ctr = np.where(is_b, STICKY_CTRS[1], STICKY_CTRS[0])
    rewards = (rng.random((profiles, visits)) < ctr[:, None]).astype(float)
    # naive: every impression a fresh draw, with the policy's propensity at its own time
    p_at = np.where(times < 0.5, EARLY_P_B, LATE_P_B)
    naive = float(np.sum(is_b[:, None] * rewards / p_at) / rewards.size)
    # sticky: one randomization per profile (its first decision's propensity), its period's rewards
    sticky = float(np.sum(is_b * rewards.sum(axis=1) / p_first) / rewards.size)
    return naive, sticky


def sticky(seeds: int, seed: int = 0) -> StickyResult:
    if seeds < 2:
        raise ReplayError(f"sticky: need at least 2 data sets for a standard error, got {seeds}", "--seeds")
    est = np.array([sticky_ips(np.random.default_rng(seed + i)) for i in range(seeds)])
    se = est.std(axis=0, ddof=1)
    return StickyResult(seeds, STICKY_CTRS[1], float(est[:, 0].mean()), float(se[0]), float(est[:, 1].mean()), float(se[1]))
