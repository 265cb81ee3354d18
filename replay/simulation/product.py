"""The product features' simulations with known truth (``compare --scenario clickbait|drift|sticky``),
each run on the simulation core: an environment of ``replay.simulation.environments``, played by
``run_online`` with the Thompson learner of ``replay.simulation.thompson`` (or a fixed logging
policy for ``sticky``).

- ``clickbait`` (``ClickbaitArms``): Thompson sampling rewarded by clicks vs by quality plays
  (``Impressions.with_reward("play")``): which artwork does each settle on (the one with the
  most traffic in the last fifth of the run)?
- ``drift`` (``DriftArms``): click rates swap halfway. Thompson sampling with counters that never
  forget vs with a half-life (the learner's ``half_life``): impressions after the swap until 80%
  of a sliding window of traffic is on the new best artwork.
- ``sticky`` (``StickyVisits``): profiles keep the artwork of their first decision and come back
  several times; the logging policy's P(B) changes halfway through time. IPS of "always show B",
  per impression with the propensity the policy had at each impression (naive:
  ``OnlineRun.current_propensity``), vs with the propensity ``run_online`` logs, the first
  decision's (the randomization unit): bias against the truth.

Each run takes its own ``numpy.random.Generator`` (seed, seed + 1, ...); results are frozen dataclasses.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from replay.simulation import SimulationError
from replay.simulation.environments import ClickbaitArms, DriftArms, StickyVisits
from replay.simulation.online import ScheduledPolicy, run_online
from replay.simulation.thompson import ThompsonOnline

REFRESH = 50  # impressions between a worker's refreshes of its probabilities, as in the service


# -- clickbait ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ClickbaitResult:
    objective: str  # the reward signal optimized: click or play
    seeds: int
    picks: dict[str, float]  # artwork -> share of seeds that settled on it
    plays_per_1000: float  # expected quality plays per 1000 impressions (true rates)
    clicks_per_1000: float


def clickbait(objective: str, seeds: int, seed: int = 0, horizon: int = 6000, refresh: int = REFRESH,
              env: ClickbaitArms | None = None) -> ClickbaitResult:
    env = env or ClickbaitArms()
    k = len(env.arms)
    picks = np.zeros(k)
    plays = clicks = 0.0
    for i in range(seeds):
        rng = np.random.default_rng(seed + i)
        traffic = env.impressions(rng, horizon)
        run = run_online(ThompsonOnline(env.n_arms, refresh=refresh), traffic.with_reward(objective), rng)
        picks[np.bincount(run.action[-horizon // 5 :], minlength=k).argmax()] += 1
        rows = np.arange(horizon)
        clicks += 1000 * float(traffic.rate("click")[rows, run.action].mean())
        plays += 1000 * float(traffic.rate("play")[rows, run.action].mean())
    return ClickbaitResult(objective, seeds, dict(zip(env.arms, (picks / seeds).tolist(), strict=True)), plays / seeds, clicks / seeds)


# -- drift -------------------------------------------------------------------------------------

RECOVERY_SHARE = 0.8
RECOVERY_WINDOW = 500


@dataclass(frozen=True)
class DriftResult:
    half_life: float | None  # in impressions; None: counters never forget
    seeds: int
    recovery: float  # mean impressions after the swap until 80% of the window is on the new best
    censored: int  # runs that never got there (counted as the rest of the run: a lower bound)
    share_new_best: float  # share of post-swap impressions on the new best


def drift(half_life: float | None, seeds: int, seed: int = 0, horizon: int = 20_000, refresh: int = REFRESH,
          env: DriftArms | None = None) -> DriftResult:
    env = env or DriftArms()
    swap = env.swap(horizon)
    times, censored, shares = [], 0, []
    for i in range(seeds):
        rng = np.random.default_rng(seed + i)
        run = run_online(ThompsonOnline(env.n_arms, refresh=refresh, half_life=half_life), env.impressions(rng, horizon), rng)
        after = (run.action[swap:] == 1).astype(float)
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

EARLY_P_B, LATE_P_B = 0.2, 0.8  # the logging policy's P(B) before and after time 0.5


@dataclass(frozen=True)
class StickyResult:
    """Bias (mean over data sets - truth) in units of the estimator's standard error on one log
    (the spread of its estimates over data sets); ``sticky_mc_se`` is the Monte Carlo error of the mean."""

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


def sticky_ips(rng: np.random.Generator, env: StickyVisits, impressions: int = 80_000) -> tuple[float, float]:
    """One logged data set; (naive, sticky) IPS estimates of "always B" (artwork 1) per impression."""
    traffic = env.impressions(rng, impressions)
    switch = int(np.searchsorted(traffic.time, 0.5))
    logging = ScheduledPolicy((np.array([1 - EARLY_P_B, EARLY_P_B]), np.array([1 - LATE_P_B, LATE_P_B])), (0, switch), "logging")
    run = run_online(logging, traffic, rng)
    shows_b = run.action == 1
    naive = float(np.mean(shows_b * run.reward / run.current_propensity))
    sticky = float(np.mean(shows_b * run.reward / run.propensity))
    return naive, sticky


def sticky(seeds: int, seed: int = 0, env: StickyVisits | None = None, impressions: int = 80_000) -> StickyResult:
    if seeds < 2:
        raise SimulationError(f"sticky: need at least 2 data sets for a standard error, got {seeds}")
    env = env or StickyVisits()
    est = np.array([sticky_ips(np.random.default_rng(seed + i), env, impressions) for i in range(seeds)])
    se = est.std(axis=0, ddof=1)
    return StickyResult(seeds, env.ctrs[1], float(est[:, 0].mean()), float(se[0]), float(est[:, 1].mean()), float(se[1]))
