"""Off-policy estimators of a target policy's value (expected reward per impression).

One small class per estimator, in the style of Open Bandit Pipeline's ``obp/ope/estimators.py``:
``Replay`` (Li, Chu, Langford, Wang 2011), ``IPS``, ``SNIPS``, ``ClippedIPS``, ``DM``, ``DR``,
``SNDR``, ``SwitchDR`` and ``DRos`` (the README's table says when to use which).

Every estimator is a smooth function of *sums over rows*. ``partial(data)`` returns those sums
for one partition (a vector, or a (B, m) matrix under Poisson bootstrap weights); partitions
combine by adding their sums; ``finish(sums)`` turns the combined sums into a value and a
standard error. ``estimate`` runs that loop over chunks of one in-memory input, which is also
the shape a distributed engine needs (map: ``partial``; reduce: ``+``).

Inputs are validated once, when ``EstimatorInput`` is built, with errors naming the argument.
Intervals: normal approximation from the per-row influence terms (delta method for the ratio
estimators; for DM and the DR family including the reward model's estimation error when the
input carries the model's weights) by default, widened where Hall's (1992) skewness-corrected
interval reaches further (``skew_corrected``: under adaptive logging the importance-weighted
terms are so right-skewed that low estimates come with small standard errors, and the plain
interval's upper bound misses the truth far more often than 2.5%). The skewness is not the
sample's, which is small exactly when the rare heavy rows that make an estimate high are missing,
but that of the terms with each reward replaced by its reward-model distribution
(``smoothed_cubic_sums``), so it does not move with the estimate; with ``bootstrap=B``, the percentile interval of
a Poisson bootstrap (each row gets a Poisson(1) weight per replicate, which is what lets it run
per partition; the weights are functions of the row's ``draw_key``, ``replay.draws``, so every
engine and chunking draws the same ones); ``interval="el"``, the empirical-likelihood (Cressie-Read) interval for IPS and
SNIPS. No interval has zero width.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from statistics import NormalDist  # the normal quantile without importing scipy (seconds)
from typing import ClassVar

import numpy as np

from replay.draws import ACCEPT_STREAM, poisson_weights, uniforms
from replay.errors import ReplayError

TINY_PROPENSITY = 1e-3
LOW_ESS_SHARE = 0.01
DEFAULT_CHUNK = 131_072


class EstimatorInputError(ReplayError):
    """An estimator input is malformed; the message names the argument."""


@dataclass(frozen=True)
class Estimate:
    """One estimator's answer. ``ci`` is the interval at ``level``; ``ess`` the effective sample size."""

    estimator: str
    value: float
    ci: tuple[float, float]
    se: float
    ess: float
    n: int
    level: float = 0.95
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, eq=False)
class EstimatorInput:
    """Per-row arrays for one target policy on one log (validated on construction).

    reward, propensity: logged reward r_i in [0, 1] and logging propensity mu(a_i|x_i) in (0, 1].
    action: slot of the logged artwork (column of ``pi`` and ``q_hat``).
    pi_chosen: target policy's probability of the logged artwork, pi(a_i|x_i).
    pi: (n, K) target distribution over slots (rows sum to <= 1; mass on artworks that are not
        in the log is simply absent). May be an unbiased one-sample estimate of it (the
        ``logged`` policy uses the one-hot of the logged action). Needed by DM and DR.
    q_hat: (n, K) modelled expected reward per slot; needed by DM and DR.
    accepted: replay's rejection-sampling outcome per row (set by learning policies, which
        accept while they learn; fixed policies get it from ``Replay`` itself).
    group: optional (n,) integer (the title) used to find target actions never logged.
    dm_weight: optional (n,) n * dDM/dr_i of the reward model that produced q_hat
        (``RewardModel.dm_weights``): DM's interval then includes the model's estimation
        error. Without it q_hat is treated as known.
    model_influence: optional ``pi -> n * d/dr_j [mean_i sum_a pi[i, a] q_hat(x_i, a)]`` for any
        (n, K) ``pi``, or for (n,) mass on the logged artworks (``RewardModel.dm_weights``); lets DR and its variants count the model's
        error on the part of DM they do not correct.
    influence: set by ``DR.prepare``: per-row coefficient of the residual in the influence function.
    pi_coded: optional (codes (n,), rows (C, K)), pi[i] = rows[codes[i]], in place of ``pi``
        (fixed policies: a row per title and candidate set; used by the warnings).
    dm_values, q_logged: optional (n,) sum_a pi(a|x_i) q_hat(x_i, a) and q_hat(x_i, a_i), in place
        of ``pi`` and ``q_hat`` (computed from small tables when both are coded).
    draw_key: optional (n,) uint64 per-row keys (``replay.draws``) of replay's acceptance and the
        bootstrap weights; without it they are drawn from the ``rng`` given to ``estimate_many``.
    """

    reward: np.ndarray
    propensity: np.ndarray
    action: np.ndarray
    pi_chosen: np.ndarray
    pi: np.ndarray | None = None
    q_hat: np.ndarray | None = None
    accepted: np.ndarray | None = None
    group: np.ndarray | None = None
    dm_weight: np.ndarray | None = None
    model_influence: Callable[[np.ndarray], np.ndarray] | None = field(default=None, repr=False)
    influence: np.ndarray | None = field(default=None, repr=False)
    validate: bool = field(default=True, repr=False)
    pi_coded: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)
    dm_values: np.ndarray | None = field(default=None, repr=False)
    q_logged: np.ndarray | None = field(default=None, repr=False)
    draw_key: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.validate:
            _validate(self)

    @property
    def n(self) -> int:
        return int(self.reward.size)

    @cached_property
    def w(self) -> np.ndarray:
        """Importance weights pi(a_i|x_i) / mu(a_i|x_i)."""
        return self.pi_chosen / self.propensity

    @cached_property
    def q_chosen(self) -> np.ndarray:
        if self.q_logged is not None:
            return self.q_logged
        return np.take_along_axis(self._need_q(), self.action[:, None], axis=1)[:, 0]

    @cached_property
    def dm_term(self) -> np.ndarray:
        """Model's value of the target distribution per row: sum_a pi(a|x_i) q_hat(x_i, a)."""
        if self.dm_values is not None:
            return self.dm_values
        if self.pi is None:
            raise EstimatorInputError("pi is required by DM and DR (the target distribution over all artworks)")
        return np.einsum("ij,ij->i", self.pi, self._need_q())

    def _need_q(self) -> np.ndarray:
        if self.q_hat is None:
            raise EstimatorInputError("q_hat is required by DM and DR (a reward model; see replay.policies.RewardModel)")
        return self.q_hat

    def slice(self, start: int, stop: int) -> EstimatorInput:
        """Rows [start, stop) as a new input, already validated (views, no copies)."""
        s = slice(start, stop)
        return EstimatorInput(
            self.reward[s], self.propensity[s], self.action[s], self.pi_chosen[s],
            None if self.pi is None else self.pi[s], None if self.q_hat is None else self.q_hat[s],
            None if self.accepted is None else self.accepted[s], None if self.group is None else self.group[s],
            None if self.dm_weight is None else self.dm_weight[s], None,
            None if self.influence is None else self.influence[s], validate=False,
            pi_coded=None if self.pi_coded is None else (self.pi_coded[0][s], self.pi_coded[1]),
            dm_values=None if self.dm_values is None else self.dm_values[s],
            q_logged=None if self.q_logged is None else self.q_logged[s],
            draw_key=None if self.draw_key is None else self.draw_key[s],
        )

    def chunks(self, size: int = DEFAULT_CHUNK) -> Iterator[EstimatorInput]:
        for start in range(0, self.n, size):
            yield self.slice(start, min(start + size, self.n))

    def with_accepted(self, accepted: np.ndarray) -> EstimatorInput:
        return replace(self, accepted=np.asarray(accepted, dtype=bool), validate=False)

    def with_draw_key(self, rng: np.random.Generator | None, why: str) -> EstimatorInput:
        """This input with per-row draw keys: its own, or drawn from ``rng`` (``why`` needs them)."""
        if self.draw_key is not None:
            return self
        if rng is None:
            raise EstimatorInputError(f"rng or draw_key is required by {why}")
        return replace(self, draw_key=rng.integers(0, 2**64, size=self.n, dtype=np.uint64), validate=False)


def _validate(d: EstimatorInput) -> None:
    def arr(name: str, dtype=float) -> np.ndarray:
        value = np.asarray(getattr(d, name), dtype=dtype)
        object.__setattr__(d, name, value)
        return value

    r = arr("reward")
    if r.ndim != 1 or r.size == 0:
        raise EstimatorInputError(f"reward must be a non-empty 1-d array, got shape {r.shape}")
    n = r.size
    for name in ("propensity", "pi_chosen"):
        if arr(name).shape != (n,):
            raise EstimatorInputError(f"{name} must have shape ({n},) like reward, got {getattr(d, name).shape}")
    a = np.asarray(d.action)
    if a.shape != (n,) or not np.issubdtype(a.dtype, np.integer):
        raise EstimatorInputError(f"action must be ({n},) integers, got shape {a.shape} dtype {a.dtype}")
    if not (r.min() >= 0 and r.max() <= 1):
        raise EstimatorInputError("reward must be in [0, 1] (and not NaN)")
    p = d.propensity
    if not (p.min() > 0 and p.max() <= 1):
        raise EstimatorInputError("propensity must be in (0, 1] (and not NaN)")
    pc = d.pi_chosen
    if not (pc.min() >= 0 and pc.max() <= 1 + 1e-9):
        raise EstimatorInputError("pi_chosen must be in [0, 1] (and not NaN)")
    if a.min() < 0:
        raise EstimatorInputError("action must be non-negative slot indices")
    for name in ("pi", "q_hat"):
        m = getattr(d, name)
        if m is None:
            continue
        m = arr(name)
        if m.ndim != 2 or m.shape[0] != n:
            raise EstimatorInputError(f"{name} must have shape ({n}, K), got {m.shape}")
        if a.max() >= m.shape[1]:
            raise EstimatorInputError(f"action has slot {int(a.max())} but {name} has only {m.shape[1]} columns")
        if not m.min() >= 0:
            raise EstimatorInputError(f"{name} must be non-negative (and not NaN)")
    if d.pi is not None and not d.pi.sum(axis=1).max() <= 1 + 1e-6:
        raise EstimatorInputError("pi rows must sum to at most 1")
    if d.q_hat is not None and not d.q_hat.max() <= 1:
        raise EstimatorInputError("q_hat must be in [0, 1]")
    if d.pi is not None and d.q_hat is not None and d.pi.shape != d.q_hat.shape:
        raise EstimatorInputError(f"pi and q_hat must have the same shape, got {d.pi.shape} and {d.q_hat.shape}")
    if d.accepted is not None and arr("accepted", bool).shape != (n,):
        raise EstimatorInputError(f"accepted must have shape ({n},)")
    if d.group is not None and np.asarray(d.group).shape != (n,):
        raise EstimatorInputError(f"group must have shape ({n},)")
    if d.dm_weight is not None and not (arr("dm_weight").shape == (n,) and np.isfinite(d.dm_weight).all()):
        raise EstimatorInputError(f"dm_weight must have shape ({n},) and be finite")
    if d.pi_coded is not None:
        codes, rows = d.pi_coded
        if np.shape(codes) != (n,) or np.ndim(rows) != 2 or not (np.min(rows) >= 0 and rows.sum(axis=1).max() <= 1 + 1e-6):
            raise EstimatorInputError(f"pi_coded must be ({n},) codes and rows of probabilities summing to at most 1")
    if d.dm_values is not None and not (arr("dm_values").shape == (n,) and np.isfinite(d.dm_values).all()):
        raise EstimatorInputError(f"dm_values must have shape ({n},) and be finite")
    if d.q_logged is not None and not (arr("q_logged").shape == (n,) and d.q_logged.min() >= 0 and d.q_logged.max() <= 1):
        raise EstimatorInputError(f"q_logged must have shape ({n},) and be in [0, 1]")
    if d.draw_key is not None and arr("draw_key", np.uint64).shape != (n,):
        raise EstimatorInputError(f"draw_key must have shape ({n},)")


def _sums(columns: Sequence[np.ndarray], weights: np.ndarray | None) -> np.ndarray:
    """Column sums (m,), or per bootstrap replicate (B, m) when weights is (B, n)."""
    if weights is None:
        return np.array([c.sum() for c in columns])
    return weights @ np.column_stack(columns)


def _count(d: EstimatorInput, weights: np.ndarray | None) -> np.ndarray:
    return np.array([d.n], dtype=float) if weights is None else weights.sum(axis=1)[:, None]


class Estimator(ABC):
    """Sufficient-statistics estimator: ``partial`` per partition, add, then ``finish``."""

    name: ClassVar[str]

    @abstractmethod
    def partial(self, data: EstimatorInput, weights: np.ndarray | None = None) -> np.ndarray:
        """Sums over this partition's rows: shape (m,), or (B, m) under bootstrap weights (B, n)."""

    @abstractmethod
    def finish(self, sums: np.ndarray) -> tuple[float, float, float]:
        """(value, standard error, effective sample size) from combined sums of shape (m,)."""

    def point(self, sums: np.ndarray) -> np.ndarray:
        """Values for a (B, m) stack of bootstrap sums."""
        return np.array([self.finish(s)[0] for s in sums])

    def prepare(self, data: EstimatorInput, rng: np.random.Generator | None) -> EstimatorInput:
        """Whole-input step before partitioning (only Replay needs one)."""
        return data

    def estimate(
        self,
        data: EstimatorInput,
        *,
        level: float = 0.95,
        bootstrap: int = 0,
        rng: np.random.Generator | None = None,
        chunk_size: int = DEFAULT_CHUNK,
        interval: str = "normal",
    ) -> Estimate:
        return estimate_many([self], data, level=level, bootstrap=bootstrap, rng=rng, chunk_size=chunk_size,
                             interval=interval)[0]

    def el_sums(self, sums: np.ndarray) -> tuple[float, ...] | None:
        """(n, sum w, sum w^2, sum w r, sum w^2 r, sum w^2 r^2) when an EL interval applies."""
        return None

    def skew_basis(self, data: EstimatorInput) -> np.ndarray | None:
        """(n, p) columns whose linear combination (``skew_coef``) is each row's influence term;
        None: the interval is not corrected for skewness."""
        return None

    def skew_coef(self, sums: np.ndarray) -> np.ndarray:
        """Coefficients (constant first) of the centred influence terms in ``skew_basis``'s columns."""
        raise NotImplementedError


def _cubic_sums(basis: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Weighted sums of every product of up to three columns of [1, basis]: a (p+1, p+1, p+1) tensor."""
    g = np.vstack([np.ones(basis.shape[0]), basis.T])  # (p+1, n): rows contiguous for the products
    gw = g * weight
    return np.stack([(gw * g[c]) @ g.T for c in range(g.shape[0])], axis=2)


@dataclass(frozen=True)
class SkewSums:
    """One partition's sums behind the smoothed skewness (``smoothed_cubic_sums``); partitions add.

    at_one, at_zero: cubic sums (``_cubic_sums``) of the skewness basis at reward 1 and at reward
    0, already weighted by q_i and 1 - q_i when a reward model gives q (``model``); otherwise
    unweighted, and q is the log's mean reward, reward_sum / rows, applied in ``cubic``.
    """

    at_one: np.ndarray
    at_zero: np.ndarray
    reward_sum: float
    rows: float
    model: bool

    def __add__(self, other: SkewSums) -> SkewSums:
        return SkewSums(self.at_one + other.at_one, self.at_zero + other.at_zero, self.reward_sum + other.reward_sum,
                        self.rows + other.rows, self.model and other.model)

    def cubic(self) -> np.ndarray:
        if self.model:
            return self.at_one + self.at_zero
        q = self.reward_sum / self.rows if self.rows > 0 else 0.0
        return q * self.at_one + (1.0 - q) * self.at_zero


def smoothed_cubic_sums(est: Estimator, data: EstimatorInput) -> SkewSums | None:
    """``est``'s skewness sums with each row's reward replaced by its model distribution.

    Every estimator's influence term is linear in the row's reward, u_i = b_i + c_i r_i. Its
    sample skewness is useless under heavy importance weights: the few rows with a huge c_i
    and r_i = 1 make both the estimate and the skewness, so when they are missing (a low
    estimate) the skewness is small too, the correction vanishes exactly when it is needed,
    and the upper bound misses one-sidedly. Here r_i is replaced by a Bernoulli(q_i) draw,
    q_i the reward model's prediction at the logged artwork (the cross-fitted ``q_hat``; without
    one, the log's mean reward), and the moments are its expectation: every heavy row counts,
    clicked or not, and the skewness no longer moves with the estimate (a Rao-Blackwellized
    skewness). For rewards in [0, 1] that are not 0/1 the Bernoulli is the widest distribution
    with that mean. Sums per partition (``SkewSums``), so chunking does not change the result.
    """
    if type(est).skew_basis is Estimator.skew_basis:
        return None
    model = data.q_hat is not None or data.q_logged is not None  # a model, in full or as its value at a_i
    q = np.clip(data.q_chosen, 0.0, 1.0) if model else np.ones(data.n)
    one = _cubic_sums(est.skew_basis(replace(data, reward=np.ones(data.n), validate=False)), q)
    zero = _cubic_sums(est.skew_basis(replace(data, reward=np.zeros(data.n), validate=False)),
                       1.0 - q if model else q)
    return SkewSums(one, zero, float(data.reward.sum()), float(data.n), model)


def _skewness(cubic: np.ndarray, coef: np.ndarray) -> float:
    """Skewness of u_i = [1, basis_i] . coef from the cubic sums (0 when u has no spread)."""
    n = cubic[0, 0, 0]
    m2 = float(np.einsum("ab,a,b->", cubic[0], coef, coef)) / n
    m3 = float(np.einsum("abc,a,b,c->", cubic, coef, coef, coef)) / n
    return m3 / m2 ** 1.5 if m2 > 0 and np.isfinite(m3) else 0.0


def skew_corrected(value: float, se: float, skew: float, n: float, z: float) -> tuple[float, float]:
    """Hall's (1992) skewness-corrected interval for a mean (a normal interval when skew = 0).

    T = (value - mu) / se has skewness about -skew / sqrt(n); Hall's monotone transform
    g(T) = T + a T^2 / 3 + a^2 T^3 / 27 + a / 6 (a = skew / sqrt(n)) is nearly normal, so
    mu lies in [value - se g^-1(z), value - se g^-1(-z)]. With right-skewed terms (large
    importance weights on rare rows), a low estimate comes with a small standard error; the
    corrected interval reaches further up than down.
    """
    a = skew / np.sqrt(n) if n > 0 else 0.0
    if abs(a) < 1e-9:
        return value - z * se, value + z * se

    def g_inv(x: float) -> float:
        return float(3.0 / a * (np.cbrt(1.0 + a * (x - a / 6.0)) - 1.0))

    return value - se * g_inv(z), value - se * g_inv(-z)


def _ratio_se(num: float, den: float, s_ww: float, s_wwr: float, s_wwrr: float) -> tuple[float, float]:
    """Self-normalized ratio sum(w r)/sum(w) and its delta-method standard error."""
    if den <= 0:
        return float("nan"), float("nan")
    v = num / den
    resid_sq = max(s_wwrr - 2 * v * s_wwr + v * v * s_ww, 0.0)
    return v, float(np.sqrt(resid_sq) / den)


def _mean_se(n: float, s1: float, s2: float) -> tuple[float, float]:
    if n <= 0:
        return float("nan"), float("nan")
    mean = s1 / n
    if n < 2:
        return mean, float("nan")
    var = max(s2 / n - mean * mean, 0.0) * n / (n - 1)
    return mean, float(np.sqrt(var / n))


def _ess(sw: float, sww: float) -> float:
    return float(sw * sw / sww) if sww > 0 else 0.0


class _MeanOfTerms(Estimator):
    """An estimator that is the mean of one term per row (IPS, DR): normal interval from the
    variance of its influence terms (the terms themselves unless a reward model's error adds to
    them), ESS from the importance weights."""

    @abstractmethod
    def terms(self, data: EstimatorInput) -> np.ndarray: ...

    def influence_terms(self, data: EstimatorInput) -> np.ndarray:
        return self.terms(data)

    def partial(self, data, weights=None):
        t = self.terms(data)
        u = self.influence_terms(data)
        ww = data.w * data.w
        return np.hstack([_count(data, weights),
                          _sums((t, t * t, data.w, ww, ww * data.reward, u, u * u), weights)])

    def finish(self, sums):
        n, s1, _s2, sw, sww, _, su, suu = sums
        v, _ = _mean_se(n, s1, s1)
        _, se = _mean_se(n, su, suu)
        return v, se, _ess(sw, sww)

    def point(self, sums):
        return sums[:, 1] / sums[:, 0]

    def skew_basis(self, data):
        return self.influence_terms(data)[:, None]

    def skew_coef(self, sums):
        return np.array([-sums[6] / sums[0], 1.0])


@dataclass(frozen=True)
class IPS(_MeanOfTerms):
    """Inverse propensity scoring: mean of w_i r_i. Unbiased when every target action can be logged."""

    name: ClassVar[str] = "ips"

    def terms(self, data):
        return data.w * data.reward

    def el_sums(self, sums):
        n, swr, swwrr, sw, sww, swwr = sums[:6]
        return n, sw, sww, swr, swwr, swwrr


@dataclass(frozen=True)
class SNIPS(Estimator):
    """Self-normalized IPS: sum(w r) / sum(w). Slightly biased, much lower variance than IPS."""

    name: ClassVar[str] = "snips"

    def partial(self, data, weights=None):
        w, r = data.w, data.reward
        ww = w * w
        wwr = ww * r
        return np.hstack([_count(data, weights), _sums((w, w * r, ww, wwr, wwr * r), weights)])

    def finish(self, sums):
        _n, sw, swr, sww, swwr, swwrr = sums
        v, se = _ratio_se(swr, sw, sww, swwr, swwrr)
        return v, se, _ess(sw, sww)

    def point(self, sums):
        return sums[:, 2] / sums[:, 1]

    def skew_basis(self, data):
        return np.column_stack([data.w, data.w * data.reward])

    def skew_coef(self, sums):
        return np.array([0.0, -sums[2] / sums[1], 1.0])

    def el_sums(self, sums):
        n, sw, swr, sww, swwr, swwrr = sums
        return n, sw, sww, swr, swwr, swwrr


@dataclass(frozen=True)
class DM(Estimator):
    """Direct method: mean over rows of sum_a pi(a|x) q_hat(x, a).

    Its variance is the row-to-row spread of those values plus the reward model's estimation
    error, sum_i (dm_weight_i (r_i - q_hat_i) / n)^2 (delta method over the model's cell means
    and slopes; see ``replay.reward_model``). Without ``dm_weight`` the model counts as known.
    """

    name: ClassVar[str] = "dm"

    def partial(self, data, weights=None):
        d = data.dm_term
        m = np.zeros(data.n) if data.dm_weight is None else data.dm_weight * (data.reward - data.q_chosen)
        # The last column is the one-step term the bootstrap resamples (see ``point``).
        return np.hstack([_count(data, weights), _sums((d, d * d, m * m, d + m), weights)])

    def finish(self, sums):
        n, s1, s2, smm, _ = sums
        v, se = _mean_se(n, s1, s2)
        if n > 0:
            se = float(np.sqrt(np.nan_to_num(se) ** 2 + smm / (n * n)))
        return v, se, float(n)

    def point(self, sums):
        # The bootstrap resamples d_i + m_i, whose spread is the spread of DM including the model's
        # error; ``estimate_many`` recentres the percentile interval on DM's own value.
        return sums[:, 4] / sums[:, 0]

    def skew_basis(self, data):
        m = np.zeros(data.n) if data.dm_weight is None else data.dm_weight * (data.reward - data.q_chosen)
        return (data.dm_term + m)[:, None]

    def skew_coef(self, sums):
        return np.array([-sums[4] / sums[0], 1.0])


@dataclass(frozen=True)
class DR(_MeanOfTerms):
    """Doubly robust (Dudik, Langford, Li 2011): DM term + w (r - q_hat(x, a_logged))."""

    name: ClassVar[str] = "dr"

    def terms(self, data):
        return data.dm_term + self.correction_weight(data) * (data.reward - data.q_chosen)

    def correction_weight(self, data: EstimatorInput) -> np.ndarray:
        """h_i in DM term + h_i (r_i - q_hat_i): w for DR, truncated or shrunk w for its variants."""
        return data.w

    def prepare(self, data, rng):
        """Per-row coefficient of the residual in the influence function, c_i = h_i + D_i - G_i.

        D_i is DM's dependence on r_i through the model (``dm_weight``), G_i the correction's
        own dependence on it through q_hat at the logged artworks. For DR they nearly cancel
        (double robustness); where a variant drops part of the correction, the model's error on
        that part stays in the interval.
        """
        if data.model_influence is None or data.dm_weight is None:
            return data
        h = self.correction_weight(data)
        # (n,) form: h is the mass on each row's logged artwork (no (n, K) one-hot).
        coef = h + data.dm_weight - data.model_influence(h)
        return replace(data, influence=coef, validate=False)

    def influence_terms(self, data):
        if data.influence is None:
            return self.terms(data)
        return data.dm_term + data.influence * (data.reward - data.q_chosen)


@dataclass(frozen=True)
class ClippedIPS(_MeanOfTerms):
    """IPS with weights clipped at ``clip``: min(w, clip) r. Biased down by E[(w - clip)+ r]."""

    clip: float = 100.0
    name: ClassVar[str] = "ipsclip"

    def terms(self, data):
        return np.minimum(data.w, self.clip) * data.reward


@dataclass(frozen=True)
class SwitchDR(DR):
    """Switch-DR (Wang, Agarwal, Dudik 2017, as OBP): DR's correction only where w <= ``tau``.

    Rows with larger weights rely on the model alone: bias E[1{w > tau} w (r - q_hat)] for a
    variance that no longer grows with the largest weights.
    """

    tau: float = 50.0
    name: ClassVar[str] = "switchdr"

    def correction_weight(self, data):
        return np.where(data.w <= self.tau, data.w, 0.0)


@dataclass(frozen=True)
class DRos(DR):
    """DR with optimistic shrinkage (Su, Dimakopoulou, Krishnamurthy, Dudik 2020, as OBP).

    The correction uses lam w / (w^2 + lam) instead of w: close to w for w << sqrt(lam), shrunk
    for the largest weights. lam -> infinity is DR.
    """

    lam: float = 1000.0
    name: ClassVar[str] = "dros"

    def correction_weight(self, data):
        w = data.w
        return self.lam * w / (w * w + self.lam)


@dataclass(frozen=True)
class SNDR(Estimator):
    """Self-normalized DR: mean DM term + sum w (r - q_hat) / sum w (delta-method interval)."""

    name: ClassVar[str] = "sndr"

    def partial(self, data, weights=None):
        d, w = data.dm_term, data.w
        e = data.reward - data.q_chosen
        we, ww = w * e, w * w
        return np.hstack([_count(data, weights), _sums(
            (d, d * d, w, we, ww, ww * e, we * we, d * w, d * we), weights)])

    def finish(self, sums):
        n, sd, sdd, sw, swe, sww, swwe, swewe, sdw, sdwe = sums
        if n <= 0 or sw <= 0:
            return float("nan"), float("nan"), 0.0
        md, c, k = sd / n, swe / sw, n / sw
        # Influence of row i: (d_i - md) + k (w_i e_i - c w_i); its mean square from the sums.
        ms = (sdd - 2 * md * sd + n * md * md
              + k * k * (swewe - 2 * c * swwe + c * c * sww)
              + 2 * k * (sdwe - c * sdw - md * (swe - c * sw))) / n
        return md + c, float(np.sqrt(max(ms, 0.0) / max(n - 1, 1.0))), _ess(sw, sww)

    def point(self, sums):
        return sums[:, 1] / sums[:, 0] + sums[:, 4] / sums[:, 3]

    def skew_basis(self, data):
        return np.column_stack([data.dm_term, data.w, data.w * (data.reward - data.q_chosen)])

    def skew_coef(self, sums):
        n, sd, _sdd, sw, swe = sums[:5]
        k = n / sw if sw > 0 else 0.0
        c = swe / sw if sw > 0 else 0.0
        return np.array([-sd / n, 1.0, -k * c, k])


@dataclass(frozen=True)
class Replay(Estimator):
    """Li et al. (2011) replay: mean reward of the rows the target policy "accepts".

    Row i is accepted with probability pi(a_i|x_i) / (M mu(a_i|x_i)), M >= max of that ratio,
    so accepted rows are draws of (x, a ~ pi) and their mean reward is unbiased for the policy's
    value. With uniform logging and a deterministic policy this is Li's "keep the row when the
    policy picks the logged arm". Learning policies supply ``accepted`` themselves (they update
    on the accepted rows, in log order); fixed policies are accepted here with M = max ratio
    over the log (``bound``: that maximum when ``data`` is one partition of the log), each row by
    its own uniform from its ``draw_key`` (``replay.draws``; from ``rng`` without keys), so a
    partitioned engine accepts the rows the in-memory one does. The effective sample size is the
    number accepted.

    For a learning policy the interval covers the reward noise of this one replayed run, not the
    run-to-run randomness of the learning path (in the tests' simulator the spread of TS runs is
    about 1.4 times the replay SE); compare learning policies with that in mind.
    """

    name: ClassVar[str] = "replay"
    bound: float | None = None

    def prepare(self, data, rng):
        if data.accepted is not None:
            return data
        data = data.with_draw_key(rng, "replay for a policy that did not accept rows itself")
        return data.with_accepted(replay_acceptance(data.pi_chosen, data.propensity, data.draw_key, self.bound))

    def partial(self, data, weights=None):
        if data.accepted is None:
            raise EstimatorInputError("accepted is required (call Replay.prepare on the whole input first)")
        acc = data.accepted.astype(float)
        ar = acc * data.reward
        return _sums((acc, ar, ar * data.reward), weights)

    def finish(self, sums):
        n, s1, s2 = sums
        v, se = _mean_se(n, s1, s2)
        return v, se, float(n)

    def point(self, sums):
        with np.errstate(invalid="ignore", divide="ignore"):
            return sums[:, 1] / sums[:, 0]

    def skew_basis(self, data):
        acc = data.accepted.astype(float)
        return np.column_stack([acc, acc * data.reward])

    def skew_coef(self, sums):
        n, s1 = sums[:2]
        return np.array([0.0, -s1 / n if n > 0 else 0.0, 1.0])


def replay_acceptance(
    pi_chosen: np.ndarray, propensity: np.ndarray, draw_key: np.ndarray, bound: float | None = None
) -> np.ndarray:
    """Rejection sampling: accept row i with probability pi_i / (M mu_i), M = bound or max(pi/mu),
    by the uniform of the row's ``draw_key`` (``replay.draws.ACCEPT_STREAM``)."""
    ratio = np.asarray(pi_chosen, float) / np.asarray(propensity, float)
    m = float(bound) if bound is not None else float(ratio.max())
    if m <= 0:
        return np.zeros(ratio.shape, dtype=bool)
    return uniforms(draw_key, ACCEPT_STREAM) < ratio / m


ESTIMATORS: dict[str, type[Estimator]] = {
    c.name: c for c in (Replay, IPS, SNIPS, DM, DR, SNDR, SwitchDR, DRos, ClippedIPS)
}
DEFAULT_ESTIMATORS = ("replay", "ips", "snips", "dm", "dr")


@dataclass(frozen=True, eq=False)
class DiagnosisSums:
    """What ``diagnose`` needs, additive over partitions (``+``; the smallest propensity by min)."""

    n: int
    pmin: float
    sw: float
    sww: float
    group_mass: np.ndarray | None = None  # (G, K) the policy's mass per group and slot
    logged: np.ndarray | None = None  # (G, K) rows logged per group and slot

    def __add__(self, other: DiagnosisSums) -> DiagnosisSums:
        def add(a, b):
            return None if a is None or b is None else a + b

        return DiagnosisSums(self.n + other.n, min(self.pmin, other.pmin), self.sw + other.sw, self.sww + other.sww,
                             add(self.group_mass, other.group_mass), add(self.logged, other.logged))


def diagnosis_sums(data: EstimatorInput, n_groups: int | None = None) -> DiagnosisSums:
    """``n_groups``: the number of groups (titles) of the whole log, when ``data`` is one partition of it."""
    w = data.w
    out = DiagnosisSums(data.n, float(data.propensity.min()), float(w.sum()), float((w * w).sum()))
    if data.pi is None and data.pi_coded is None:
        return out
    groups = np.zeros(data.n, dtype=np.int64) if data.group is None else np.asarray(data.group, np.int64)
    n_g = n_groups if n_groups is not None else int(groups.max()) + 1
    if data.pi_coded is not None:
        codes, rows = data.pi_coded
        k = rows.shape[1]
        # Rows per (code, group): the policy's mass per group and slot from the few distinct rows.
        per = np.bincount(np.asarray(codes, np.int64) * n_g + groups, minlength=rows.shape[0] * n_g)
        group_mass = per.reshape(rows.shape[0], n_g).T.astype(float) @ rows  # (G, K)
    else:
        k = data.pi.shape[1]
        group_mass = np.stack([np.bincount(groups, weights=data.pi[:, a], minlength=n_g) for a in range(k)], axis=1)
    logged = np.bincount(groups * k + data.action, minlength=n_g * k).reshape(-1, k)
    return replace(out, group_mass=group_mass, logged=logged)


def diagnose(data: EstimatorInput | DiagnosisSums) -> tuple[str, ...]:
    """Warnings shared by the estimators: tiny propensities, unlogged target actions, low ESS."""
    d = data if isinstance(data, DiagnosisSums) else diagnosis_sums(data)
    out: list[str] = []
    if d.pmin < TINY_PROPENSITY:
        out.append(f"tiny logged propensities (min {d.pmin:.2g}): IPS-type estimates have huge variance")
    ess = _ess(d.sw, d.sww)
    if ess < LOW_ESS_SHARE * d.n:
        out.append(f"effective sample size {ess:.0f} is under {LOW_ESS_SHARE:.0%} of {d.n} rows")
    if d.group_mass is not None:
        unlogged_mass = float(d.group_mass[d.logged == 0].sum()) / d.n
        if unlogged_mass > 1e-9:
            out.append(
                f"the policy puts {unlogged_mass:.1%} of its mass on artworks never logged for the title: "
                "IPS/SNIPS/replay cannot see them (biased); DM/DR extrapolate with the reward model"
            )
        missing = 1.0 - float(d.group_mass.sum()) / d.n
        if missing > 1e-6:
            out.append(f"{missing:.1%} of the policy's mass is on artworks absent from the log (counted as reward 0)")
    return tuple(out)


def cressie_read_interval(
    n: float, sw: float, sww: float, swr: float, swwr: float, swwrr: float, level: float,
    wmin: float = 0.0, wmax: float = np.inf, rmin: float = 0.0, rmax: float = 1.0,
) -> tuple[float, float]:
    """Empirical-likelihood interval for E[w r] under E[w] = 1 (Cressie-Read power -2).

    Karampatziakis, Mineiro, Ramdas (2021); the closed form of VW's ``vw-estimators`` package
    (``estimators/bandits/cressieread.py``, ``IntervalImpl.get``), which the tests use as the
    reference. One fake observation at the extreme weight keeps the interval honest when the
    heavy tail has not been sampled yet, and the profile-likelihood threshold comes from the
    F(1, n) distribution, so it is asymmetric where the weights are.
    """
    from scipy.stats import f

    if n <= 0:
        return float("nan"), float("nan")
    alpha = 1.0 - level
    atol = 1e-9
    unc_fake = wmax if sw < n else wmin
    if unc_fake == np.inf:
        unc_g = 1 + 1 / n
    else:
        a = (unc_fake + sw) / (1 + n)
        b = (unc_fake ** 2 + sww) / (1 + n)
        unc_g = (1 + n) * (a - 1) ** 2 / (b - a * a)
    phi = (-unc_g - float(f.isf(alpha, 1, n))) / (2 * (1 + n))
    bounds = []
    for r, sign in ((rmin, 1), (rmax, -1)):
        candidates = []
        for fake in (wmin, wmax):
            if fake == np.inf:
                x = sign * (r + (swr - sw * r) / n)
                y = (r * sw - swr) ** 2 / (n * (1 + n)) - (r * r * sww - 2 * r * swwr + swwrr) / (1 + n)
                z = phi + 1 / (2 * n)
            else:
                bw = (fake + sw) / (1 + n)
                bww = (fake * fake + sww) / (1 + n)
                if not bww > bw * bw:
                    continue
                bwr = sign * (fake * r + swr) / (1 + n)
                bwwr = sign * (fake * fake * r + swwr) / (1 + n)
                bwwrr = (fake * fake * r * r + swwrr) / (1 + n)
                x = bwr + (1 - bw) * (bwwr - bw * bwr) / (bww - bw * bw)
                y = (bwwr - bw * bwr) ** 2 / (bww - bw * bw) - (bwwrr - bwr * bwr)
                z = phi + 0.5 * (1 - bw) ** 2 / (bww - bw * bw)
            if abs(y * z) <= atol * atol:
                candidates.append(x - np.sqrt(2) * atol)
            elif z <= 0 and y * z >= 0:
                candidates.append(x - np.sqrt(2 * y * z))
        best = min(candidates) if candidates else rmin
        bounds.append(float(min(rmax, max(rmin, sign * best))))
    return bounds[0], bounds[1]


def _wilson(p: float, n: float, z: float) -> tuple[float, float]:
    """Wilson score interval for a mean in [0, 1] seen over n (effective) rows."""
    n = max(n, 1.0)
    p = min(max(p, 0.0), 1.0)
    center = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return center - half, center + half


INTERVALS = ("normal", "bootstrap", "el")


def check_interval(interval: str, bootstrap: int, level: float) -> str:
    """The interval method ``bootstrap`` replicates and ``interval`` ask for, checked."""
    if interval not in INTERVALS:
        raise EstimatorInputError(f"interval must be one of {', '.join(INTERVALS)}, got {interval!r}")
    if interval == "bootstrap" and not bootstrap:
        raise EstimatorInputError("interval 'bootstrap' needs bootstrap > 0 replicates")
    if not 0 < level < 1:
        raise EstimatorInputError(f"level must be in (0, 1), got {level!r}")
    if bootstrap < 0 or int(bootstrap) != bootstrap:
        raise EstimatorInputError(f"bootstrap must be a non-negative integer, got {bootstrap!r}")
    if bootstrap and interval == "normal":
        interval = "bootstrap"
    if bootstrap and interval != "bootstrap":
        raise EstimatorInputError(f"bootstrap replicates and interval {interval!r} exclude each other")
    return interval


def estimate_many(
    estimators: Sequence[Estimator],
    data: EstimatorInput,
    *,
    level: float = 0.95,
    bootstrap: int = 0,
    rng: np.random.Generator | None = None,
    chunk_size: int = DEFAULT_CHUNK,
    on_progress: Callable[[int], None] | None = None,
    warnings: tuple[str, ...] | None = None,
    interval: str = "normal",
) -> list[Estimate]:
    """Run several estimators in one pass over chunks of ``data`` (shared weights per chunk).

    ``interval``: "normal" (delta method, skewness-corrected), "bootstrap" (percentile of ``bootstrap`` Poisson
    replicates; implied by bootstrap > 0) or "el" (empirical likelihood, Cressie-Read; for the
    estimators that have one, the others keep the normal interval and say so). An interval is
    never of zero width: when every row's term is the same (e.g. no clicks at all), the Wilson
    interval over the effective sample size is used instead.
    """
    interval = check_interval(interval, bootstrap, level)
    if chunk_size < 1:
        raise EstimatorInputError(f"chunk_size must be >= 1, got {chunk_size!r}")
    if bootstrap:
        data = data.with_draw_key(rng, "the bootstrap")
    prepared = [e.prepare(data, rng) for e in estimators]
    totals, cubics, boots = accumulate(estimators, prepared, interval=interval, bootstrap=bootstrap,
                                       chunk_size=chunk_size, on_progress=on_progress)
    shared = diagnose(data) if warnings is None else warnings
    return finish_estimates(estimators, totals, cubics, boots, n=data.n, pmin=float(data.propensity.min()),
                            shared=shared, level=level, interval=interval)


def accumulate(
    estimators: Sequence[Estimator], prepared: Sequence[EstimatorInput], *, interval: str = "normal",
    bootstrap: int = 0, chunk_size: int = DEFAULT_CHUNK, on_progress: Callable[[int], None] | None = None,
) -> tuple[list[np.ndarray], list[SkewSums | None], list[np.ndarray | None]]:
    """Each estimator's sums over the rows of its prepared input (one chunk at a time), its smoothed
    skewness sums under the normal interval, and its (B, m) sums per bootstrap replicate (weights
    from the rows' ``draw_key``): what ``finish_estimates`` needs, and what partitions add up."""
    totals: list[np.ndarray | None] = [None] * len(estimators)
    boots: list[np.ndarray | None] = [None] * len(estimators)
    cubics: list[SkewSums | None] = [None] * len(estimators)
    n = prepared[0].n if prepared else 0
    keys = prepared[0].draw_key if bootstrap and prepared else None
    for start in range(0, n, chunk_size):
        stop = min(start + chunk_size, n)
        chunk_views: dict[int, EstimatorInput] = {}
        weights = poisson_weights(keys[start:stop], bootstrap) if bootstrap else None
        for j, (est, d) in enumerate(zip(estimators, prepared, strict=True)):
            # Estimators sharing one prepared input share one chunk, so w is computed once.
            view = chunk_views.setdefault(id(d), d.slice(start, stop))
            part = est.partial(view)
            totals[j] = part if totals[j] is None else totals[j] + part
            cub = smoothed_cubic_sums(est, view) if interval == "normal" else None
            if cub is not None:
                cubics[j] = cub if cubics[j] is None else cubics[j] + cub
            if weights is not None:
                bpart = est.partial(view, weights)
                boots[j] = bpart if boots[j] is None else boots[j] + bpart
        if on_progress is not None:
            on_progress(stop)
    return totals, cubics, boots


def finish_estimates(
    estimators: Sequence[Estimator], totals: Sequence[np.ndarray], cubics: Sequence[SkewSums | None],
    boots: Sequence[np.ndarray | None], *, n: int, pmin: float, shared: tuple[str, ...], level: float, interval: str,
) -> list[Estimate]:
    """Estimates and intervals from the combined sums of every row (``estimate_many``'s last step,
    and a partitioned engine's). ``pmin``: the smallest logged propensity (the EL interval's bound)."""
    # The largest importance weight a target policy can give on these rows: 1 / the smallest logged
    # propensity (the EL interval is much tighter with a finite bound than with infinity).
    wmax = max(1.0 / pmin, 1.0 + 1e-6) if interval == "el" else np.inf
    z = NormalDist().inv_cdf(0.5 + level / 2)
    results = []
    for est, total, boot, cubic in zip(estimators, totals, boots, cubics, strict=True):
        value, se, ess = est.finish(total)
        own = list(shared) if not _model_based(est) else [w for w in shared if "DM/DR" in w or "absent" in w]
        if boot is not None:
            vals = est.point(boot)
            vals = vals[np.isfinite(vals)]
            lo, hi = (np.quantile(vals, [(1 - level) / 2, (1 + level) / 2]) if vals.size else (np.nan, np.nan))
            # Percentiles of the resampled statistic, moved to this estimator's own value (they
            # differ only for DM, whose bootstrap resamples its one-step form).
            shift = value - float(est.point(total[None, :])[0])
            ci = (float(lo) + shift, float(hi) + shift)
        elif interval == "el" and est.el_sums(total) is not None:
            ci = cressie_read_interval(*est.el_sums(total), level, wmax=wmax)
        else:
            if interval == "el":
                own.append(f"no empirical-likelihood interval for {est.name}: normal interval")
            skew = _skewness(cubic.cubic(), est.skew_coef(total)) if cubic is not None and np.isfinite(se) else 0.0
            # The skewness of heavy importance-weighted terms is itself a noisy estimate, and
            # Hall's transform then also pulls the near bound in; the correction may only widen.
            hall = skew_corrected(value, se, skew, n, z)
            ci = (min(value - z * se, hall[0]), max(value + z * se, hall[1]))
        if np.isfinite(value) and not ci[1] > ci[0]:
            ci = _wilson(value, ess if ess > 0 else n, z)
            ci = (min(ci[0], value), max(ci[1], value))
        if est.name == "replay" and ess < 30:
            own.append(f"replay accepted only {ess:.0f} rows")
        results.append(Estimate(est.name, float(value), (float(ci[0]), float(ci[1])), float(se), float(ess),
                                n, level, tuple(own)))
    return results


def _model_based(est: Estimator) -> bool:
    return est.name == "dm"
