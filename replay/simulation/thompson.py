"""The Thompson learner of every simulation and of replay's ``thompson`` policy, and its online policy.

``ThompsonLearner`` keeps counts per (title, segment, artwork) and acts with
``bandit.thompson``'s exact action probabilities (quadrature, uniform mix), recomputed for a
title after every ``batch`` of its new events. ``ThompsonOnline`` plays it in
``replay.simulation.online.run_online``; ``replay.policies.ThompsonPolicy`` replays it on logs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from replay.policy_base import REFRESH
from replay.simulation import SimulationError

if TYPE_CHECKING:
    from bandit.thompson import ThompsonSampling
    from replay.simulation.environments import Impressions


class ThompsonLearner:
    """Thompson sampling state over titles x segments, refreshed in batches.

    Counts are kept per (title, segment, artwork slot). The action distribution of each
    (title, segment) is the service's: ``ThompsonSampling.action_probabilities`` of the segment
    posterior (or of the title posterior when the logs have no segments), i.e. exact quadrature
    with the uniform mix. It is recomputed for a title after every ``batch`` of that title's
    new events, as the service recomputes it once per counts snapshot; between refreshes the
    policy acts on the stale snapshot. That keeps millions of rows affordable (one quadrature
    per segment per refresh instead of per row) and is documented as the replayed policy's
    semantics: "TS whose posteriors are refreshed every ``batch`` of a title's impressions".

    ``half_life``: counters that forget (``bandit.decay``, discounted Thompson sampling), in a
    title's impressions: each event is added with the growth weight of its time (the title's
    event count), posteriors are read decayed to the refresh's time, and the sums are rebased
    after ``REBASE_HALF_LIVES`` half-lives, as the store does. None: counters never forget.
    """

    def __init__(self, ts: ThompsonSampling, arms_per_title: np.ndarray, n_segments: int, k: int,
                 use_segments: bool, batch: int, half_life: float | None = None):
        if batch < 1:
            raise SimulationError(f"refresh (ts batch) must be >= 1, got {batch}")
        if half_life is not None and not (np.isfinite(half_life) and half_life > 0):
            raise SimulationError(f"half_life must be a positive number of impressions, got {half_life!r}")
        self.half_life = half_life
        self.ts, self.batch, self.use_segments = ts, int(batch), use_segments
        self.arms = np.asarray(arms_per_title, dtype=int)
        t_n = self.arms.size
        self.n = np.zeros((t_n, n_segments, k))
        self.s = np.zeros((t_n, n_segments, k))
        self.pending = np.zeros(t_n, dtype=np.int64)
        self.clock = np.zeros(t_n, dtype=np.int64)  # events seen per title: the decay's time
        self.epoch = np.zeros(t_n)
        self.probs = np.zeros((t_n, n_segments, k))
        self.refreshes = 0
        for t in range(t_n):
            self.refresh(t)

    def refresh(self, t: int) -> None:
        kt = self.arms[t]
        n, s = self.n[t, :, :kt], self.s[t, :, :kt]
        if self.half_life is not None:
            from bandit.decay import REBASE_HALF_LIVES, decayed, growth_weight  # scipy: only once a simulation runs

            now = float(self.clock[t])
            if now - self.epoch[t] > REBASE_HALF_LIVES * self.half_life:
                scale = 1.0 / growth_weight(now, self.epoch[t], self.half_life)
                self.n[t] *= scale
                self.s[t] *= scale
                self.epoch[t] = now
            n, s = decayed(n, now, self.epoch[t], self.half_life), decayed(s, now, self.epoch[t], self.half_life)
        n_t, s_t = n.sum(axis=0), s.sum(axis=0)
        if not self.use_segments:
            p = self.ts.action_probabilities(self.ts.posterior(n_t, s_t))
            self.probs[t, :, :kt] = p[None, :]
        else:
            for g in range(self.n.shape[1]):
                post = self.ts.segment_posterior(n_t, s_t, n[g], s[g])
                self.probs[t, g, :kt] = self.ts.action_probabilities(post)
        self.pending[t] = 0
        self.refreshes += 1

    def update(self, title: np.ndarray, segment: np.ndarray, action: np.ndarray, reward: np.ndarray) -> None:
        counts = np.bincount(title, minlength=self.pending.size)
        if self.half_life is None:
            weight = 1.0
        else:  # each event at its time: the title's clock plus its rank among the title's events here
            order = np.argsort(title, kind="stable")
            rank = np.empty(title.size, dtype=np.int64)
            rank[order] = np.arange(title.size) - np.repeat(np.cumsum(counts) - counts, counts)
            time = self.clock[title] + rank
            weight = 2.0 ** ((time - self.epoch[title]) / self.half_life)
        np.add.at(self.n, (title, segment, action), weight)
        np.add.at(self.s, (title, segment, action), weight * reward)
        self.pending += counts
        self.clock += counts

    def first_refresh(self, event_titles: np.ndarray) -> int:
        """Index of the first event (in order) that completes a title's batch, or -1."""
        if event_titles.size == 0:
            return -1
        order = np.argsort(event_titles, kind="stable")
        sorted_t = event_titles[order]
        starts = np.flatnonzero(np.r_[True, sorted_t[1:] != sorted_t[:-1]])
        group_start = np.repeat(starts, np.diff(np.r_[starts, sorted_t.size]))
        rank = np.empty_like(order)
        rank[order] = np.arange(sorted_t.size) - group_start
        hit = np.flatnonzero(self.pending[event_titles] + rank + 1 >= self.batch)
        return int(hit[0]) if hit.size else -1


class ThompsonOnline:
    """Thompson sampling serving and learning online (the service's, with exact propensities).

    One learner over the environment's titles and segments; ``use_segments=False`` shares one
    posterior per title (the context-free bandit of ``compare``). ``decision()``: the first
    title's artwork whose posterior probability of being best exceeds ``decision_level``.
    ``half_life``: forgetting counters (see ``ThompsonLearner``).
    """

    def __init__(self, n_arms: np.ndarray, n_segments: int = 1, sampler: ThompsonSampling | None = None,
                 refresh: int = REFRESH, use_segments: bool = False, decision_level: float = 0.95,
                 half_life: float | None = None):
        from bandit.thompson import ThompsonSampling  # scipy: only once a simulation runs

        self.name = "thompson"
        self.sampler = sampler or ThompsonSampling()
        n_arms = np.asarray(n_arms, dtype=int)
        self.learner = ThompsonLearner(self.sampler, n_arms, n_segments, int(n_arms.max()), use_segments, refresh, half_life)
        self.decision_level = decision_level

    @property
    def probabilities(self) -> np.ndarray:
        """The first title's (first segment's) current action probabilities."""
        return self.learner.probs[0, 0, : self.learner.arms[0]]

    @property
    def p_best(self) -> np.ndarray:
        """Posterior P(artwork is best) behind ``probabilities`` (the uniform mix taken out)."""
        eps, p = self.sampler.uniform_mix, self.probabilities
        return (p - eps / p.size) / (1.0 - eps)

    def steady(self, traffic: Impressions, start: int, stop: int) -> int:
        # some title completes its batch within titles x batch events (each has < batch pending)
        window = min(stop, start + self.learner.arms.size * self.learner.batch)
        j = self.learner.first_refresh(traffic.title[start:window])
        return window - start if j < 0 else j + 1

    def pmf(self, traffic: Impressions, start: int, stop: int) -> np.ndarray:
        return self.learner.probs[traffic.title[start:stop], traffic.segment[start:stop]]

    def learn(self, traffic, start, stop, action, reward, propensity) -> None:
        t = traffic.title[start:stop]
        self.learner.update(t, traffic.segment[start:stop], action, reward)
        last = int(t[-1])
        if self.learner.pending[last] >= self.learner.batch:
            self.learner.refresh(last)

    def decision(self) -> int | None:
        p_best = self.p_best
        best = int(np.argmax(p_best))
        return best if p_best[best] > self.decision_level else None
