"""The one online loop: a policy serves simulated impressions and learns from their rewards.

``run_online(policy, impressions, rng)`` plays impressions in order. A policy's action
distribution stays fixed until it next learns, so the loop asks the policy how many impressions
its current distribution serves (``steady``), draws those actions at once from the policy's
exact probabilities (the propensity logged is the probability of the artwork shown), takes
their rewards from the environment's potential outcomes and hands them to the policy
(``learn``). A fixed policy serves everything in one block; Thompson sampling serves until a
title's refresh is due (``replay.policy_base.REFRESH`` impressions by default); VW learns after
every impression; an A/B test after every impression until it ships.

Sticky titles (``Impressions.repeat_of``): a repeat shows its first decision's artwork and logs
that decision's propensity (the randomization unit is the first decision; no new draw, no new
propensity claim); ``OnlineRun.current_propensity`` keeps what the policy's distribution at the
repeat itself gave the artwork, which is what a per-impression log would wrongly claim.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from replay.simulation.environments import Impressions


class OnlinePolicy(Protocol):
    name: str

    def steady(self, traffic: Impressions, start: int, stop: int) -> int:
        """How many impressions from ``start`` (at most ``stop - start``, at least 1) the current
        distribution serves before the policy must learn."""

    def pmf(self, traffic: Impressions, start: int, stop: int) -> np.ndarray:
        """(stop - start, K) action probabilities of those impressions."""

    def learn(self, traffic: Impressions, start: int, stop: int, action: np.ndarray, reward: np.ndarray,
              propensity: np.ndarray) -> None: ...

    def decision(self) -> int | None:
        """The artwork the policy has settled on for everybody, if any."""


@dataclass(frozen=True, eq=False)
class OnlineRun:
    """Per impression: artwork slot shown, its propensity, the reward, and the policy's expected
    CTR (its distribution times the viewer's true CTRs); the decisions the policy declared."""

    action: np.ndarray
    propensity: np.ndarray
    reward: np.ndarray
    expected_ctr: np.ndarray
    current_propensity: np.ndarray | None = None  # sticky traffic: see the module doc
    decided_at: int | None = None  # impressions seen when decision() first returned an arm
    first_decision: int | None = None  # that arm
    best_decided_at: int | None = field(default=None)  # impressions seen when it first returned ``best``

    def ctr(self, last: int | None = None) -> float:
        """Mean expected CTR over the last ``last`` impressions (all by default)."""
        x = self.expected_ctr if last is None else self.expected_ctr[-last:]
        return float(x.mean())


def draw(rng: np.random.Generator, probs: np.ndarray) -> np.ndarray:
    """One action per row of ``probs`` (one uniform per row)."""
    cum = np.cumsum(probs, axis=1)
    u = rng.random(probs.shape[0]) * cum[:, -1]
    return np.minimum((cum < u[:, None]).sum(axis=1), probs.shape[1] - 1)


def run_online(policy: OnlinePolicy, traffic: Impressions, rng: np.random.Generator, best: int | None = None) -> OnlineRun:
    """Play ``policy`` over ``traffic``; ``best``: the arm whose first declaration is timed."""
    n = traffic.n
    action = np.empty(n, dtype=np.int64)
    prop, reward, expected = np.empty(n), np.empty(n), np.empty(n)
    repeat_of = traffic.repeat_of
    current = None if repeat_of is None else np.empty(n)
    decided_at = first = best_at = None
    start = 0
    while True:
        decision = policy.decision()
        if decision is not None and decided_at is None:
            decided_at, first = start, decision
        if best is not None and decision == best and best_at is None:
            best_at = start
        if start == n:
            break
        stop = start + max(1, min(n - start, policy.steady(traffic, start, n)))
        pmf = policy.pmf(traffic, start, stop)
        rows = np.arange(stop - start)
        a = draw(rng, pmf)
        p = pmf[rows, a]
        if repeat_of is not None:
            # first decisions are never repeats: they are final once drawn, even within this block
            action[start:stop], prop[start:stop] = a, p
            first = repeat_of[start:stop]
            rep = np.flatnonzero(first >= 0)
            a[rep], p[rep] = action[first[rep]], prop[first[rep]]
            current[start:stop] = pmf[rows, a]
            pmf = pmf.copy()  # a repeat's distribution is its first decision's artwork, surely
            pmf[rep] = np.eye(pmf.shape[1])[a[rep]]
        r = traffic.outcomes[start:stop][rows, a]
        action[start:stop], prop[start:stop], reward[start:stop] = a, p, r
        expected[start:stop] = np.einsum("ik,ik->i", pmf, traffic.ctr[start:stop])
        policy.learn(traffic, start, stop, a, r, prop[start:stop])
        start = stop
    return OnlineRun(action, prop, reward, expected, current, decided_at, first, best_at)


@dataclass(frozen=True, eq=False)
class FixedPolicy:
    """A policy that never learns: ``pi[title, slot]`` (rows sum to 1 over the title's artworks)."""

    pi: np.ndarray
    name: str = "fixed"
    arm: int | None = None  # the artwork it declares it has settled on, if any

    def steady(self, traffic: Impressions, start: int, stop: int) -> int:
        return stop - start

    def pmf(self, traffic: Impressions, start: int, stop: int) -> np.ndarray:
        return np.nan_to_num(np.asarray(self.pi, dtype=float))[traffic.title[start:stop]]

    def learn(self, traffic, start, stop, action, reward, propensity) -> None:
        pass

    def decision(self) -> int | None:
        return self.arm

    @classmethod
    def uniform(cls, n_arms: np.ndarray) -> FixedPolicy:
        """Every artwork of a title with equal probability (``n_arms``: artworks per title)."""
        k = int(max(n_arms))
        return cls(np.array([[1.0 / m if j < m else 0.0 for j in range(k)] for m in n_arms]), "uniform")

    @classmethod
    def always(cls, arm: int, k: int) -> FixedPolicy:
        """One title, always artwork ``arm`` (and it says so)."""
        return cls(np.eye(k)[[arm]], f"always-{arm}", arm)


@dataclass(frozen=True, eq=False)
class ScheduledPolicy:
    """A policy that never learns but changes its distribution at given impressions: ``pis[i]``
    (one title's probabilities) serves from ``starts[i]`` (``starts[0] == 0``, increasing)."""

    pis: tuple[np.ndarray, ...]
    starts: tuple[int, ...]
    name: str = "scheduled"

    def _at(self, start: int) -> int:
        return int(np.searchsorted(self.starts, start, side="right")) - 1

    def steady(self, traffic: Impressions, start: int, stop: int) -> int:
        i = self._at(start)
        return (stop if i + 1 == len(self.starts) else min(stop, self.starts[i + 1])) - start

    def pmf(self, traffic: Impressions, start: int, stop: int) -> np.ndarray:
        return np.broadcast_to(np.asarray(self.pis[self._at(start)], dtype=float), (stop - start, len(self.pis[0]))).copy()

    def learn(self, traffic, start, stop, action, reward, propensity) -> None:
        pass

    def decision(self) -> int | None:
        return None
