"""Sequential A/B analysis: always-valid p-values and confidence sequences for two proportions.

Mixture SPRT (Robbins 1970; Johari, Koomen, Pekelis, Walsh 2017, "Always valid inference", the
method behind Optimizely's stats engine and the sequential options of GrowthBook and Eppo). With
theta = p_t - p_c, its estimate d_n and variance V_n = p(1-p)(1/n_t + 1/n_c) (pooled p), and a
normal mixture N(0, tau^2) over the alternatives, the likelihood ratio against theta = 0 is

    Lambda_n = sqrt(V_n / (V_n + tau^2)) * exp(d_n^2 tau^2 / (2 V_n (V_n + tau^2))).

Lambda_n is (asymptotically) a martingale under the null, so by Ville's inequality
P(sup_n Lambda_n >= 1/alpha) <= alpha: the always-valid p-value p_n = min(1, min_{m<=n} 1/Lambda_m)
may be looked at after every day, and the experiment stopped the first time p_n < alpha,
without inflating the false-positive rate. Inverting the same mixture at every theta gives the
confidence sequence d_n +- sqrt(V_n (V_n + tau^2) / tau^2 * (log((V_n + tau^2) / V_n) - 2 log alpha)),
which holds at every look simultaneously. tau is the scale of effects the test is tuned to
(detects effects near tau fastest); it does not affect validity.

A fixed-horizon z-test looked at every day and stopped at the first p < alpha does not have this
property: ``peeking_simulation`` measures both on A/A experiments.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

from replay.errors import ReplayError

DEFAULT_TAU = 0.02


class SequentialInputError(ReplayError):
    """A sequential-analysis argument is malformed; ``argument`` names it."""

    def __init__(self, argument: str, message: str) -> None:
        super().__init__(f"{argument}: {message}", argument)


@dataclass(frozen=True)
class SequentialLooks:
    """One entry per look (cumulative counts up to that look)."""

    n_t: np.ndarray
    n_c: np.ndarray
    diff: np.ndarray  # p_t - p_c
    p_value: np.ndarray  # always-valid (running minimum of 1 / Lambda)
    ci_low: np.ndarray  # confidence sequence (running intersection)
    ci_high: np.ndarray
    fixed_p_value: np.ndarray  # the fixed-horizon pooled z-test at each look, for comparison
    alpha: float
    tau: float

    @property
    def stopped_at(self) -> int | None:
        """First look whose always-valid p-value is below alpha (None if none)."""
        hit = np.flatnonzero(self.p_value < self.alpha)
        return int(hit[0]) if hit.size else None


def _check(alpha: float, tau: float) -> None:
    if not 0 < alpha < 1:
        raise SequentialInputError("alpha", f"must be in (0, 1), got {alpha!r}")
    if not (tau > 0 and math.isfinite(tau)):
        raise SequentialInputError("tau", f"must be a positive number, got {tau!r}")


def _stats(clicks_t, n_t, clicks_c, n_c, alpha: float, tau: float):
    """(diff, 1/Lambda, CS half-width, fixed z-test p) per look; works on arrays of any shape."""
    n_t, n_c = np.asarray(n_t, float), np.asarray(n_c, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        p_t, p_c = clicks_t / n_t, clicks_c / n_c
        pooled = (clicks_t + clicks_c) / (n_t + n_c)
        diff = p_t - p_c
        var = pooled * (1 - pooled) * (1 / n_t + 1 / n_c)
        t2 = tau * tau
        log_lr = 0.5 * np.log(var / (var + t2)) + diff * diff * t2 / (2 * var * (var + t2))
        inv_lr = np.where(var > 0, np.exp(-np.minimum(log_lr, 700.0)), 1.0)
        half = np.sqrt(var * (var + t2) / t2 * (np.log((var + t2) / var) - 2 * math.log(alpha)))
        # No variance yet (no clicks at all, or all clicks): nothing is known beyond [-1, 1].
        half = np.where(var > 0, half, 2.0)
        z = np.where(var > 0, diff / np.sqrt(var), 0.0)
    return diff, np.minimum(inv_lr, 1.0), half, 2 * stats.norm.sf(np.abs(z))


def sequential_looks(clicks_t, n_t, clicks_c, n_c, alpha: float = 0.05, tau: float = DEFAULT_TAU) -> SequentialLooks:
    """Always-valid inference at each look from cumulative counts (1-d arrays, one per look)."""
    _check(alpha, tau)
    arrays = [np.asarray(x, float) for x in (clicks_t, n_t, clicks_c, n_c)]
    if len({a.shape for a in arrays}) != 1 or arrays[0].ndim != 1 or arrays[0].size == 0:
        raise SequentialInputError("counts", "need equal-length non-empty 1-d cumulative counts per look")
    x_t, m_t, x_c, m_c = arrays
    if any(np.any(np.diff(a) < 0) for a in arrays) or np.any(x_t > m_t) or np.any(x_c > m_c) or np.any(x_t < 0):
        raise SequentialInputError("counts", "counts must be cumulative (non-decreasing) with clicks <= units")
    if m_t[0] <= 0 or m_c[0] <= 0:
        raise SequentialInputError("counts", "each arm needs at least one unit at the first look")
    diff, inv_lr, half, fixed_p = _stats(x_t, m_t, x_c, m_c, alpha, tau)
    return SequentialLooks(
        n_t=m_t.astype(int), n_c=m_c.astype(int), diff=diff, p_value=np.minimum.accumulate(inv_lr),
        ci_low=np.maximum.accumulate(np.maximum(diff - half, -1.0)),
        ci_high=np.minimum.accumulate(np.minimum(diff + half, 1.0)),
        fixed_p_value=fixed_p, alpha=alpha, tau=tau,
    )


@dataclass(frozen=True)
class PeekingResult:
    experiments: int
    days: int
    users_per_arm_per_day: int
    ctr: float
    alpha: float
    tau: float
    fixed_false_positive: float  # share of A/A experiments a daily-peeked z-test declared significant
    sequential_false_positive: float  # the same for the always-valid p-value
    fixed_final_day_false_positive: float  # the z-test looked at once, at the end (the honest use)

    def mc_error(self, rate: float) -> float:
        return math.sqrt(max(rate * (1 - rate), 1e-12) / self.experiments)


def peeking_simulation(rng: np.random.Generator, experiments: int = 2000, days: int = 30,
                       users_per_arm_per_day: int = 200, ctr: float = 0.10, alpha: float = 0.05,
                       tau: float = DEFAULT_TAU) -> PeekingResult:
    """A/A experiments (both arms at ``ctr``) looked at once a day: how often is "significant" declared?"""
    _check(alpha, tau)
    if experiments < 1 or days < 1 or users_per_arm_per_day < 1:
        raise SequentialInputError("experiments", "experiments, days and users per day must be >= 1")
    if not 0 < ctr < 1:
        raise SequentialInputError("ctr", f"must be in (0, 1), got {ctr!r}")
    x_t = rng.binomial(users_per_arm_per_day, ctr, size=(experiments, days)).cumsum(axis=1)
    x_c = rng.binomial(users_per_arm_per_day, ctr, size=(experiments, days)).cumsum(axis=1)
    n = users_per_arm_per_day * np.arange(1, days + 1)[None, :]
    _, inv_lr, _, fixed_p = _stats(x_t, n, x_c, n, alpha, tau)
    return PeekingResult(
        experiments, days, users_per_arm_per_day, ctr, alpha, tau,
        fixed_false_positive=float(np.mean((fixed_p < alpha).any(axis=1))),
        sequential_false_positive=float(np.mean((inv_lr < alpha).any(axis=1))),
        fixed_final_day_false_positive=float(np.mean(fixed_p[:, -1] < alpha)),
    )
