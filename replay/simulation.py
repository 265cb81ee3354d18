"""Simulated traffic with known ground truth, for testing estimators and comparing policies.

``Environment`` holds the true click-through rate of every (title, artwork, segment) and
samples traffic and rewards from it. It is deliberately small and reusable:

    env = two_artworks()                      # one title, artworks a1/a2 at 24% / 30%
    env = segmented_titles(rng, n_titles=4)   # segments prefer different artworks
    ctx = env.sample_contexts(rng, n)         # Contexts(title, segment, profile) index arrays
    r = env.sample_reward(rng, ctx.title, arm_slots, ctx.segment)   # 0/1 rewards, vectorized
    env.true_ctr(t, a, g)                     # the truth, same indexing
    env.policy_value(pi_table)                # true value of a fixed policy (title x artwork)

Indices everywhere: ``title`` into ``env.titles``, artwork slot into ``env.artworks[title]``,
``segment`` into ``env.segments``. ``simulate_logs`` writes logs in the SPEC schema from a
logging policy (uniform, thompson or a table), with the true propensities.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from bandit.thompson import SEGMENTS
from replay.errors import ReplayError
from replay.policies import ThompsonLearner
from replay.policy_base import PolicyOptions


class SimulationError(ReplayError):
    """A simulation argument is malformed; the message names it."""


@dataclass(frozen=True, eq=False)
class Contexts:
    """Sampled traffic: per impression the title, segment and profile (indices)."""

    title: np.ndarray
    segment: np.ndarray
    profile: np.ndarray


@dataclass(frozen=True, eq=False)
class Environment:
    """True CTR per (title, artwork slot, segment); ``ctr[t, a, g]`` is NaN past title t's artworks.

    title_weights / segment_weights: traffic shares (normalized). Profiles: ``n_profiles`` ids,
    each with a fixed segment, drawn uniformly per impression.
    """

    titles: tuple[str, ...]
    artworks: tuple[tuple[str, ...], ...]
    ctr: np.ndarray
    segments: tuple[str, ...] = SEGMENTS
    title_weights: np.ndarray | None = None
    segment_weights: np.ndarray | None = None
    n_profiles: int = 10_000
    profile_segment: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        t_n, s_n = len(self.titles), len(self.segments)
        if t_n == 0 or len(self.artworks) != t_n:
            raise SimulationError("titles and artworks must be non-empty and of equal length")
        k = max(len(a) for a in self.artworks)
        ctr = np.asarray(self.ctr, dtype=float)
        if ctr.shape != (t_n, k, s_n):
            raise SimulationError(f"ctr must have shape (titles, max artworks, segments) = {(t_n, k, s_n)}, got {ctr.shape}")
        for t, arts in enumerate(self.artworks):
            block = ctr[t, : len(arts)]
            if len(arts) < 1 or not np.all((block >= 0) & (block <= 1)):
                raise SimulationError(f"ctr of title {self.titles[t]!r} must be in [0, 1] for each of its artworks")
        object.__setattr__(self, "ctr", ctr)
        for name, size in (("title_weights", t_n), ("segment_weights", s_n)):
            w = getattr(self, name)
            w = np.full(size, 1.0 / size) if w is None else np.asarray(w, dtype=float)
            if w.shape != (size,) or np.any(w < 0) or not w.sum() > 0:
                raise SimulationError(f"{name} must be {size} non-negative numbers with a positive sum")
            object.__setattr__(self, name, w / w.sum())
        if self.n_profiles < 1:
            raise SimulationError(f"n_profiles must be >= 1, got {self.n_profiles}")
        # Profiles' segments are a fixed function of the profile index, drawn with the weights.
        cum = np.cumsum(self.segment_weights)
        positions = (np.arange(self.n_profiles) + 0.5) / self.n_profiles
        object.__setattr__(self, "profile_segment", np.minimum(np.searchsorted(cum, positions), s_n - 1))

    @property
    def n_arms(self) -> np.ndarray:
        return np.array([len(a) for a in self.artworks])

    def profile_id(self, index: int) -> str:
        return f"p{index}"

    def sample_contexts(self, rng: np.random.Generator, n: int) -> Contexts:
        title = rng.choice(len(self.titles), size=n, p=self.title_weights)
        profile = rng.integers(self.n_profiles, size=n)
        return Contexts(title, self.profile_segment[profile], profile)

    def true_ctr(self, title, artwork, segment) -> np.ndarray:
        """True CTR (vectorized over index arrays)."""
        return self.ctr[title, artwork, segment]

    def sample_reward(self, rng: np.random.Generator, title, artwork, segment) -> np.ndarray:
        """Bernoulli(true CTR) rewards as floats 0/1 (vectorized over index arrays)."""
        p = self.true_ctr(title, artwork, segment)
        return (rng.random(np.shape(p)) < p).astype(float)

    def traffic(self) -> np.ndarray:
        """P(title, segment) of one impression: (T, S)."""
        return self.title_weights[:, None] * self.segment_weights[None, :]

    def policy_value(self, pi: np.ndarray) -> float:
        """True value of a policy giving ``pi[t, a]`` (or ``pi[t, a, g]`` per segment)."""
        pi = np.asarray(pi, dtype=float)
        if pi.ndim == 2:
            pi = np.repeat(pi[:, :, None], len(self.segments), axis=2)
        ctr = np.nan_to_num(self.ctr)
        return float(np.einsum("tg,tag,tag->", self.traffic(), pi, ctr))

    def best_value(self) -> float:
        """Value of the oracle that knows the best artwork per title and segment."""
        return float((self.traffic() * np.nanmax(self.ctr, axis=1)).sum())

    def table(self, pi: np.ndarray) -> dict[str, dict[str, float]]:
        """A (T, K) probability array as ``{title: {artwork: p}}`` (the ``table:`` policy shape)."""
        return {t: {a: float(pi[i, j]) for j, a in enumerate(arts)} for i, (t, arts) in enumerate(zip(self.titles, self.artworks, strict=True))}


def two_artworks(ctr: tuple[float, float] = (0.24, 0.30), title: str = "t1") -> Environment:
    """One title, artworks ``a1``/``a2`` with the given CTR in every segment."""
    c = np.array(ctr, dtype=float)
    return Environment((title,), (("a1", "a2"),), np.repeat(c[None, :, None], len(SEGMENTS), axis=2))


def segmented_titles(rng: np.random.Generator, n_titles: int = 4, n_artworks: int = 3,
                     base: tuple[float, float] = (0.04, 0.12), lift: float = 0.08) -> Environment:
    """Several titles where each segment has its own favourite artwork.

    Base CTRs are drawn in ``base``; segment g of title t likes artwork (t + g) mod K, which
    gets ``lift`` more, so no single artwork is best for every segment.
    """
    if n_titles < 1 or n_artworks < 2:
        raise SimulationError("n_titles must be >= 1 and n_artworks >= 2")
    s_n = len(SEGMENTS)
    ctr = rng.uniform(base[0], base[1], size=(n_titles, n_artworks, 1)).repeat(s_n, axis=2)
    for t in range(n_titles):
        for g in range(s_n):
            ctr[t, (t + g) % n_artworks, g] += lift
    titles = tuple(f"title{t + 1}" for t in range(n_titles))
    artworks = tuple(tuple(f"t{t + 1}-art{a + 1}" for a in range(n_artworks)) for t in range(n_titles))
    return Environment(titles, artworks, np.clip(ctr, 0, 1), segment_weights=np.array([0.15, 0.25, 0.4, 0.2]))


@dataclass(frozen=True, eq=False)
class Served:
    """What a simulated policy served: indices, true propensities and rewards per impression."""

    contexts: Contexts
    action: np.ndarray
    propensity: np.ndarray
    reward: np.ndarray


def _draw(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    cum = np.cumsum(probs, axis=1)
    u = rng.random(probs.shape[0]) * cum[:, -1]
    return np.minimum((cum < u[:, None]).sum(axis=1), probs.shape[1] - 1)


def serve_fixed(env: Environment, rng: np.random.Generator, n: int, pi: np.ndarray) -> Served:
    """Serve ``n`` impressions from a fixed policy ``pi[t, a]`` (rows sum to 1 over artworks)."""
    pi = np.nan_to_num(np.asarray(pi, dtype=float))
    ctx = env.sample_contexts(rng, n)
    probs = pi[ctx.title]
    action = _draw(rng, probs)
    return Served(ctx, action, probs[np.arange(n), action], env.sample_reward(rng, ctx.title, action, ctx.segment))


def serve_thompson(env: Environment, rng: np.random.Generator, n: int, options: PolicyOptions | None = None,
                   use_segments: bool = True) -> Served:
    """On-policy Thompson sampling for ``n`` impressions, refreshing a title every ``ts_batch`` events.

    Same learner and batching as the replayed ``thompson`` policy, so the two are comparable.
    """
    options = options or PolicyOptions()
    k = max(len(a) for a in env.artworks)
    learner = ThompsonLearner(options.thompson(), env.n_arms, len(env.segments), k, use_segments, options.ts_batch)
    ctx = env.sample_contexts(rng, n)
    action = np.empty(n, dtype=np.int64)
    prop = np.empty(n)
    reward = np.empty(n)
    start = 0
    while start < n:
        stop = min(n, start + 65_536)
        t = ctx.title[start:stop]
        j = learner.first_refresh(t)
        end = stop if j < 0 else start + j + 1
        t, g = ctx.title[start:end], ctx.segment[start:end]
        probs = learner.probs[t, g]
        a = _draw(rng, probs)
        r = env.sample_reward(rng, t, a, g)
        action[start:end], prop[start:end], reward[start:end] = a, probs[np.arange(end - start), a], r
        learner.update(t, g, a, r)
        if j >= 0:
            learner.refresh(int(ctx.title[end - 1]))
        start = end
    return Served(ctx, action, prop, reward)


def to_logs(env: Environment, served: Served, policy: str, start_time: float = 1.7e9,
            interval_s: float = 0.01, event_prefix: str = "e") -> pd.DataFrame:
    """Served impressions as a log table in the SPEC schema (with candidates and segment)."""
    n = served.action.size
    titles = np.array(env.titles, dtype=object)[served.contexts.title]
    arts = np.array([np.array(a + ("",) * (max(env.n_arms) - len(a)), dtype=object) for a in env.artworks])
    candidates = np.empty(len(env.titles), dtype=object)
    candidates[:] = [list(a) for a in env.artworks]
    return pd.DataFrame({
        "event_id": [f"{event_prefix}{i}" for i in range(n)],
        "timestamp": start_time + interval_s * np.arange(n),
        "profile": [f"p{p}" for p in served.contexts.profile],
        "title": titles,
        "artwork": arts[served.contexts.title, served.action],
        "propensity": served.propensity,
        "reward": served.reward,
        "policy": policy,
        "candidates": candidates[served.contexts.title],
        "segment": np.array(env.segments, dtype=object)[served.contexts.segment],
    })


def simulate_logs(env: Environment, rng: np.random.Generator, n: int, logging: str = "uniform",
                  table: dict[str, dict[str, float]] | None = None, options: PolicyOptions | None = None) -> pd.DataFrame:
    """``n`` logged impressions from ``logging`` in {"uniform", "thompson", "table"} (then pass ``table``)."""
    if n < 1:
        raise SimulationError(f"n must be >= 1, got {n}")
    if logging == "uniform":
        k = max(env.n_arms)
        pi = np.array([[1.0 / len(a) if j < len(a) else 0.0 for j in range(k)] for a in env.artworks])
        served = serve_fixed(env, rng, n, pi)
    elif logging == "thompson":
        served = serve_thompson(env, rng, n, options)
    elif logging == "table":
        if table is None:
            raise SimulationError("logging='table' needs table={title: {artwork: probability}}")
        served = serve_fixed(env, rng, n, table_array(env, table))
    else:
        raise SimulationError(f"logging must be uniform, thompson or table, got {logging!r}")
    return to_logs(env, served, policy=logging)


def table_array(env: Environment, table: dict[str, dict[str, float]]) -> np.ndarray:
    """``{title: {artwork: p}}`` as a (T, K) array over the environment's artworks."""
    k = max(env.n_arms)
    out = np.zeros((len(env.titles), k))
    for t, (title, arts) in enumerate(zip(env.titles, env.artworks, strict=True)):
        if title not in table:
            raise SimulationError(f"table has no probabilities for title {title!r}")
        unknown = set(table[title]) - set(arts)
        if unknown:
            raise SimulationError(f"table lists artworks {sorted(unknown)} that title {title!r} does not have")
        out[t, : len(arts)] = [table[title].get(a, 0.0) for a in arts]
        if abs(out[t].sum() - 1) > 1e-6:
            raise SimulationError(f"table probabilities of title {title!r} sum to {out[t].sum():.6g}, not 1")
    return out
