"""Counters that forget: exponential decay with a half-life (discounted Thompson sampling).

An observation at time t counts 2^(-(now - t) / h) at time ``now``. Stored counters never need
a rewrite per observation: each observation is added with the weight 2^((t - epoch) / h),
growing with time, and a read multiplies the sums by 2^(-(now - epoch) / h). The epoch is moved
forward (every sum rescaled once) only when the weights grow large (``REBASE_HALF_LIVES``).
"""

from __future__ import annotations

import numpy as np

from bandit.errors import BanditInputError

# Rebase the epoch after this many half-lives: weights stay below 2^40, far inside a double's
# exact range, so an increment of 1 at the epoch is not lost beside the largest weights.
REBASE_HALF_LIVES = 40.0


def _check(half_life: float) -> float:
    if not (isinstance(half_life, (int, float)) and np.isfinite(half_life) and half_life > 0):
        raise BanditInputError(f"half_life must be a positive number, got {half_life!r}")
    return float(half_life)


def growth_weight(t: float, epoch: float, half_life: float) -> float:
    """What an observation at ``t`` adds to the stored sums: 2^((t - epoch) / h)."""
    return float(2.0 ** ((t - epoch) / _check(half_life)))


def decayed(stored, now: float, epoch: float, half_life: float) -> np.ndarray:
    """Stored sums read at ``now``: sum over observations of weight * 2^(-(now - t) / h)."""
    return np.asarray(stored, dtype=float) * 2.0 ** (-(now - epoch) / _check(half_life))


def closed_form(times, values, now: float, half_life: float) -> float:
    """sum_i values_i * 2^(-(now - t_i) / h): the decayed sum the stored counters must equal."""
    t = np.asarray(times, dtype=float)
    return float(np.sum(np.asarray(values, dtype=float) * 2.0 ** (-(now - t) / _check(half_life))))
