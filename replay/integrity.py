"""Propensity integrity check: do the logged propensities match what was actually served?

For each title and logging policy, and each artwork a that was served, the inverse-propensity
count S_a = sum over rows that served a of 1 / mu_i must estimate the number of rows N,
whatever the policy did from row to row (E[1{a_i = a} / mu(a|x_i)] = 1).

The test, per (title, logging policy) group: Pearson's T = sum_a (S_a - N)^2 / W_a with
W_a = sum_i 1/mu(a|x_i), the null's expected D_a (for constant propensities T is Pearson's
chi-square on the counts). The logs give mu(a|x_i) only for the artwork row i served; for the
others it is imputed from the nearest row in time (same segment) that served them, except the
stalest, which gets the rest of the probability (see ``imputed_null``: a bandit stops serving an
artwork it has learnt to avoid, so that artwork's last logged propensity is out of date and too
high, which made W_a too small and the test cry wolf). The S_a are correlated (Cov = -N) and T
is about chi2(K-1) + lambda chi2(1), lambda = 1 - N sum_a 1/W_a (Satterthwaite). Where that
approximation matters (small expected counts, heavy inverse weights) and the p-value is small,
it is replaced by a Monte-Carlo p-value: T recomputed on artworks drawn from the imputed null,
(1 + #{T* >= T}) / (1 + draws), which is calibrated at any count (given the imputed null: on
Thompson logs its group p-values fall below 0.0025 and 0.01 as often as with the simulator's
exact propensities). A group's draws come from its own stream (``group_rng``: the seed and the
group's key), so the Dask engine, checking groups on different workers, draws the same numbers. Per-profile deterministic policies (the service's ``ab`` split hashes
the profile) are tested on one row per profile (its first): a profile's impressions all show
the same artwork and are not independent.

The log-level verdict corrects for testing many groups (Holm): a group is flagged when its
Holm-adjusted p-value is below alpha, so an honest log is flagged with probability at most alpha.

A wrong propensity (logging 1/K while a bandit served 70/30, forgetting the uniform mix, logging
the propensity of another artwork) makes every off-policy estimator wrong, so it is flagged.
Tiny propensities, low effective sample size, deterministic logging and never-served artworks
are warnings: they limit what can be evaluated but do not mean the logs are wrong.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
from scipy.stats import chi2

from replay.errors import ReplayError
from replay.logs import LogArrays

TINY_PROPENSITY = 1e-3
LOW_ESS_SHARE = 0.01
MC_DRAWS = 999
MC_BUDGET = 4e7  # draws x rows per group above which the chi-square approximation is used
LARGE_EXPECTED = 200.0  # expected count per artwork above which the chi-square approximation is used
PER_PROFILE_POLICIES = frozenset({"ab"})


class IntegrityError(ReplayError):
    """A check argument is malformed; the message names it."""


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
    method: str = "pearson"  # pearson, monte-carlo, inverse-propensity or none
    unit: str = "impression"  # or "profile" for per-profile deterministic policies
    p_adjusted: float = 1.0  # Holm-adjusted over the log's groups
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class IntegrityReport:
    groups: tuple[GroupCheck, ...]
    alpha: float

    @property
    def flagged(self) -> bool:
        return any(g.flags for g in self.groups)


def holm(p: np.ndarray) -> np.ndarray:
    """Holm step-down adjusted p-values (monotone, capped at 1)."""
    p = np.asarray(p, dtype=float)
    m = p.size
    order = np.argsort(p)
    adj = np.minimum(1.0, np.maximum.accumulate((m - np.arange(m)) * p[order]))
    out = np.empty(m)
    out[order] = adj
    return out


def check_propensities(logs: LogArrays, alpha: float = 0.01, rng: np.random.Generator | None = None) -> IntegrityReport:
    """Check every (title, logging policy) group of ``logs``; flag when Holm-adjusted p < alpha.

    ``rng`` gives one number (``mc_base``); each group's Monte-Carlo draws come from it and the
    group's key (``group_rng``), so they do not depend on the other groups: a partitioned engine
    checking groups on different workers draws the same numbers."""
    check_alpha(alpha)
    base = mc_base(rng)
    n_pol = len(logs.logging_policies)
    group = logs.title.astype(np.int64) * n_pol + logs.logging_policy
    draws = mc_draws(len(np.unique(group)), alpha)
    checks = []
    for gi in np.unique(group):
        t, pol = divmod(int(gi), n_pol)
        rows = np.flatnonzero(group == gi)
        keys = logs.segment[rows] if logs.has_segment else None
        checks.append(check_group(logs.titles[t], logs.arms[t], logs.logging_policies[pol], logs.action[rows],
                                  logs.propensity[rows], keys, logs.profile[rows], base, draws))
    return finish_report(checks, alpha)


def check_alpha(alpha: float) -> None:
    if not 0 < alpha < 1:
        raise IntegrityError(f"alpha must be in (0, 1), got {alpha!r}")


def mc_base(rng: np.random.Generator | None) -> int:
    return int((np.random.default_rng(0) if rng is None else rng).integers(2**63))


def mc_draws(groups: int, alpha: float) -> int:
    """Enough draws that the smallest Monte-Carlo p-value can pass Holm's first threshold."""
    return max(MC_DRAWS, int(np.ceil(5 * groups / alpha)))


def group_rng(base: int, title: str, policy: str) -> np.random.Generator:
    """The group's own stream: from ``base`` and the group's key only."""
    digest = hashlib.sha256(f"{title}\0{policy}".encode()).digest()
    return np.random.default_rng([base, *np.frombuffer(digest[:16], dtype=np.uint32).tolist()])


def finish_report(checks: list[GroupCheck], alpha: float) -> IntegrityReport:
    """The groups' checks (in title, policy order) with Holm-adjusted p-values and flags."""
    p_adj = holm(np.array([c.p_value for c in checks])) if checks else np.array([])
    out = []
    for c, pa in zip(checks, p_adj, strict=True):
        flags = []
        if pa < alpha:
            flags.append(c.flags[0])
        out.append(GroupCheck(**{**c.__dict__, "p_adjusted": float(pa), "flags": tuple(flags)}))
    return IntegrityReport(tuple(out), alpha)


def imputed_null(logs: LogArrays, t: int, rows: np.ndarray) -> np.ndarray:
    """Each row's full distribution over title t's artworks under the null, (n, K + 1).

    The logged propensity of the served artwork is exact; another artwork's is that of the
    nearest row in time (same segment when the logs have one) that served it, since a policy's
    distribution changes slowly (a bandit refreshes its snapshot now and then). The stalest of
    them (its nearest serving furthest away) gets the rest, 1 - mu_i - the others: a bandit stops
    serving an artwork it has learnt to avoid, so the stalest value is the one most likely out of
    date, and a value seen when the artwork was still served (selected because it was high)
    would make W_a too small. When the rest is not positive (a refresh between the neighbours)
    the imputed others are scaled to fill 1 - mu_i. The last column is mass no served artwork
    accounts for.
    """
    keys = logs.segment[rows] if logs.has_segment else None
    return _imputed(len(logs.arms[t]), logs.action[rows], logs.propensity[rows], keys)


def _imputed(kt: int, a: np.ndarray, mu: np.ndarray, keys: np.ndarray | None) -> np.ndarray:
    n = a.size
    out = np.zeros((n, kt + 1))
    dist = np.zeros((n, kt))  # rows (of the scope) to the nearest serving of each artwork
    keys = np.zeros(n, dtype=np.int64) if keys is None else keys
    for scope in (np.ones(n, dtype=bool),) + tuple(keys == g for g in np.unique(keys)):
        pos = np.flatnonzero(scope)
        for arm in range(kt):
            hit = np.flatnonzero(a[pos] == arm)  # indices into pos
            if hit.size == 0:
                continue
            here = np.arange(pos.size)
            j = np.clip(np.searchsorted(hit, here), 1, hit.size) - 1
            right = np.minimum(j + 1, hit.size - 1)
            near = np.where(np.abs(hit[right] - here) < np.abs(hit[j] - here), hit[right], hit[j])
            # The whole-group pass fills every row; the per-segment passes then overwrite.
            out[pos, arm] = mu[pos[near]]
            dist[pos, arm] = np.abs(near - here)
    idx = np.arange(n)
    others = out[:, :kt].copy()
    others[idx, a] = 0.0
    room = 1.0 - mu
    stale = np.argmax(np.where(others > 0, dist, -1.0), axis=1)
    fresh = others.copy()
    fresh[idx, stale] = 0.0
    rest = room - fresh.sum(axis=1)
    # Only an artwork served somewhere in the group can take the rest (never-served ones stay 0).
    residual = (rest > 0) & (others[idx, stale] > 0)
    total = others.sum(axis=1)
    scale = np.divide(room, total, out=np.zeros(n), where=total > 0)
    others *= np.minimum(scale, np.where(total > 0, np.inf, 0.0))[:, None]
    others[idx[residual]] = fresh[residual]
    others[idx[residual], stale[residual]] = rest[residual]
    out[:, :kt] = others
    out[idx, a] = mu
    out[:, kt] = np.clip(1.0 - out[:, :kt].sum(axis=1), 0.0, None)
    return out


def _pearson(n: int, s: np.ndarray, w: np.ndarray) -> np.ndarray:
    """sum_a (S_a - N)^2 / W_a over the columns of s (..., K)."""
    return ((s - n) ** 2 / w).sum(axis=-1)


def check_group(title: str, artworks: tuple[str, ...], policy: str, a: np.ndarray, mu: np.ndarray,
                keys: np.ndarray | None, profile: np.ndarray, base: int, draws: int) -> GroupCheck:
    """One (title, logging policy) group from its rows in time order: served slots ``a`` into
    ``artworks``, propensities ``mu``, segment codes ``keys`` (None without segments), profile codes."""
    unit = "impression"
    if policy in PER_PROFILE_POLICIES:
        # First row of each profile: the split hashes the profile, so later rows repeat it.
        _, first = np.unique(profile, return_index=True)
        first = np.sort(first)
        a, mu, keys, unit = a[first], mu[first], None if keys is None else keys[first], "profile"
    kt = len(artworks)
    n = int(a.size)
    inv = 1.0 / mu
    obs = np.bincount(a, minlength=kt)[:kt]
    s = np.bincount(a, weights=inv, minlength=kt)[:kt]
    d = np.bincount(a, weights=inv * inv, minlength=kt)[:kt]
    served = obs > 0
    pmin = float(mu.min())
    ess = float(s.sum() ** 2 / d.sum()) if d.sum() > 0 else 0.0
    null = _imputed(kt, a, mu, keys)
    probs = null[:, :kt]
    # W_a = sum_i 1/mu(a|x_i): the null's E[D_a]; Pearson's N/mu_a for constant propensities.
    w = np.array([np.sum(1.0 / probs[probs[:, j] > 0, j]) if served[j] else 0.0 for j in range(kt)])
    stat = float(_pearson(n, s[served], w[served]))
    lam = float(np.clip(1.0 - n * (1.0 / w[served]).sum(), 0.0, 1.0)) if served.any() else 0.0
    k = int(served.sum())
    mean, var = k - 1 + lam, 2.0 * (k - 1 + lam * lam)
    if mean < 1e-9:
        dof, p, method = 0.0, 1.0 if stat < 1e-9 else 0.0, "none"
    else:
        c, dof = var / (2 * mean), 2 * mean * mean / var
        p, method = float(chi2.sf(stat / c, dof)), "chi-square"
        expected_min = float((n * n / w[served]).min())
        if p < 0.05 and expected_min < LARGE_EXPECTED and n * draws <= MC_BUDGET:
            p, method = _monte_carlo_p(null, n, served, w, stat, group_rng(base, title, policy), draws), "monte-carlo"
    expected = np.where(served, n * n / np.where(w > 0, w, np.inf), 0.0)
    worst = int(np.argmax(np.where(served, np.abs(s - n) / np.sqrt(np.where(w > 0, w, 1.0)), -1)))
    alarm = (f"logged propensities disagree with what was served ({method} p={p:.2g}); e.g. artwork "
             f"{artworks[worst]!r}: served {int(obs[worst])}, inverse propensities imply {s[worst]:.0f} of {n} "
             f"{unit}s")
    warnings = []
    if pmin < TINY_PROPENSITY:
        warnings.append(f"tiny propensities (min {pmin:.2g}): inverse weights up to {1 / pmin:.0f}")
    if kt > 1 and served.sum() == 1 and pmin >= 1.0:
        warnings.append("deterministic logging (every propensity 1): no other artwork can be evaluated")
    elif ess < LOW_ESS_SHARE * n:
        warnings.append(f"effective sample size {ess:.0f} is under {LOW_ESS_SHARE:.0%} of {n} rows")
    never = [art for art, o in zip(artworks, obs, strict=True) if o == 0]
    if never and pmin < 1.0 and served.sum() > 1:
        warnings.append(f"artworks never served: {', '.join(never)} (target policies choosing them cannot be evaluated)")
    if unit == "profile":
        warnings.append(f"{policy} assigns by profile: tested on {n} profiles (first impression each), "
                        "not on impressions")
    return GroupCheck(
        title=title, policy=policy, n=n, artworks=tuple(artworks),
        observed=tuple(int(o) for o in obs), implied=tuple(float(x) for x in s),
        expected=tuple(float(x) for x in expected), statistic=stat, dof=float(dof), p_value=float(p),
        min_propensity=pmin, ess=ess, flags=(alarm,), method=method, unit=unit, warnings=tuple(warnings),
    )


def _monte_carlo_p(null: np.ndarray, n: int, served: np.ndarray, w: np.ndarray, stat: float,
                   rng: np.random.Generator, draws: int) -> float:
    """(1 + #{T* >= T}) / (1 + draws), T* from artworks drawn from the imputed null per row."""
    kt = served.size
    cum = np.cumsum(null, axis=1)
    cum[:, -1] = np.inf
    probs = null[:, :kt]
    inv = np.divide(1.0, probs, out=np.zeros_like(probs), where=probs > 0)
    exceed = 0
    batch = max(1, int(MC_BUDGET // (4 * max(n, 1))))
    done = 0
    while done < draws:
        b = min(batch, draws - done)
        u = rng.random((b, n))
        drawn = (cum[None, :, :] < u[:, :, None]).sum(axis=2)  # (b, n) in 0..K (K = unaccounted mass)
        s_sim = np.stack([((drawn == j) * inv[None, :, j]).sum(axis=1) for j in range(kt)], axis=1)
        exceed += int((_pearson(n, s_sim[:, served], w[served]) >= stat - 1e-9 * max(stat, 1.0)).sum())
        done += b
    return (1 + exceed) / (1 + draws)
