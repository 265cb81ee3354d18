"""Propensity integrity check: do the logged propensities match what was actually served?

For each title and logging policy, and each artwork a that was served, the inverse-propensity
count S_a = sum over rows that served a of 1 / mu_i must estimate the number of rows N,
whatever the policy did from row to row (E[1{a_i = a} / mu(a|x_i)] = 1). With constant
propensities this is the familiar check of observed counts O_a against expected N mu_a.

The test statistic is T = sum_a (S_a - N)^2 / D_a with D_a = sum over those rows of 1/mu_i^2.
For constant propensities T is Neyman's chi-square sum (O_a - N mu_a)^2 / O_a on K-1 degrees of
freedom. In general the S_a are correlated (Cov = -N) and T is distributed as
chi2(K-1) + lambda chi2(1) with lambda = 1 - N sum_a 1/D_a in [0, 1]; the p-value uses the
Satterthwaite approximation c chi2(nu) with matching mean and variance.

A wrong propensity (logging 1/K while a bandit served 70/30, forgetting the uniform mix,
logging the propensity of another artwork) makes every off-policy estimator wrong, so it is
flagged, with the minimum propensity and the effective sample size of the inverse weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import chi2

from replay.logs import LogArrays

TINY_PROPENSITY = 1e-3
LOW_ESS_SHARE = 0.01


@dataclass(frozen=True)
class GroupCheck:
    title: str
    policy: str
    n: int
    artworks: tuple[str, ...]
    observed: tuple[int, ...]
    implied: tuple[float, ...]  # S_a: rows implied by the inverse propensities of artwork a
    expected: tuple[float, ...]  # N * (harmonic-mean propensity of a): N mu_a when constant
    statistic: float
    dof: float
    p_value: float
    min_propensity: float
    ess: float
    flags: tuple[str, ...]


@dataclass(frozen=True)
class IntegrityReport:
    groups: tuple[GroupCheck, ...]
    alpha: float

    @property
    def flagged(self) -> bool:
        return any(g.flags for g in self.groups)


def inverse_propensity_test(n: int, served: np.ndarray, s: np.ndarray, d: np.ndarray) -> tuple[float, float, float]:
    """(T, effective degrees of freedom, p-value) for the served artworks' S_a and D_a sums."""
    s, d = s[served], d[served]
    k = int(served.sum())
    if k == 0 or n == 0:
        return 0.0, 0.0, 1.0
    t = float(((s - n) ** 2 / d).sum())
    lam = float(np.clip(1.0 - n * (1.0 / d).sum(), 0.0, 1.0))
    mean, var = k - 1 + lam, 2.0 * (k - 1 + lam * lam)
    if mean < 1e-9:
        # Every row served the same artwork with propensity 1: nothing random to test.
        return t, 0.0, 1.0 if t < 1e-9 else 0.0
    c, nu = var / (2 * mean), 2 * mean * mean / var
    return t, float(nu), float(chi2.sf(t / c, nu))


def check_propensities(logs: LogArrays, alpha: float = 0.01) -> IntegrityReport:
    """Check every (title, logging policy) group of ``logs``; flag when p < alpha and more."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    k = logs.k
    n_pol = len(logs.logging_policies)
    group = logs.title.astype(np.int64) * n_pol + logs.logging_policy
    n_groups = len(logs.titles) * n_pol
    cell = group * k + logs.action
    size = n_groups * k
    inv = 1.0 / logs.propensity
    observed = np.bincount(cell, minlength=size).reshape(n_groups, k)
    s_sum = np.bincount(cell, weights=inv, minlength=size).reshape(n_groups, k)
    d_sum = np.bincount(cell, weights=inv * inv, minlength=size).reshape(n_groups, k)
    rows = np.bincount(group, minlength=n_groups)
    pmin = np.full(n_groups, np.inf)
    np.minimum.at(pmin, group, logs.propensity)
    out = []
    for gi in np.flatnonzero(rows):
        t, pol = divmod(int(gi), n_pol)
        kt = len(logs.arms[t])
        n = int(rows[gi])
        obs, s, d = observed[gi, :kt], s_sum[gi, :kt], d_sum[gi, :kt]
        served = obs > 0
        stat, dof, p = inverse_propensity_test(n, served, s, d)
        ess = float(s.sum() ** 2 / d.sum()) if d.sum() > 0 else 0.0
        expected = np.where(served, n * obs / np.where(s > 0, s, 1.0), 0.0)
        flags = []
        if p < alpha:
            worst = int(np.argmax(np.where(served, np.abs(s - n) / np.sqrt(np.where(d > 0, d, 1.0)), -1)))
            flags.append(
                f"logged propensities disagree with what was served (chi-square p={p:.2g}); e.g. artwork "
                f"{logs.arms[t][worst]!r}: served {int(obs[worst])}, inverse propensities imply {s[worst]:.0f} of {n} rows"
            )
        if pmin[gi] < TINY_PROPENSITY:
            flags.append(f"tiny propensities (min {pmin[gi]:.2g}): inverse weights up to {1 / pmin[gi]:.0f}")
        if kt > 1 and served.sum() == 1 and pmin[gi] >= 1.0:
            flags.append("deterministic logging (every propensity 1): no other artwork can be evaluated")
        elif ess < LOW_ESS_SHARE * n:
            flags.append(f"effective sample size {ess:.0f} is under {LOW_ESS_SHARE:.0%} of {n} rows")
        never = [a for a, o in zip(logs.arms[t], obs, strict=True) if o == 0]
        if never and pmin[gi] < 1.0 and served.sum() > 1:
            flags.append(f"artworks never served: {', '.join(never)} (target policies choosing them cannot be evaluated)")
        out.append(GroupCheck(
            title=logs.titles[t], policy=logs.logging_policies[pol], n=n, artworks=logs.arms[t],
            observed=tuple(int(o) for o in obs), implied=tuple(float(x) for x in s),
            expected=tuple(float(x) for x in expected), statistic=stat, dof=dof, p_value=p,
            min_propensity=float(pmin[gi]), ess=ess, flags=tuple(flags),
        ))
    return IntegrityReport(tuple(out), alpha)
