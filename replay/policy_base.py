"""What every replayed policy shares: its output, its protocol, its options and its error.

Kept apart from the policies themselves so ``replay.policies`` (fixed and Thompson policies),
``replay.vw_replay`` (VW) and ``replay.policy_registry`` (names -> factories) import this and
never each other.

A policy's contract: given the logs (rows in time order), the probability it gives each
candidate artwork in each row. ``Policy.evaluate(logs, rng)`` returns a ``PolicyOutput``:

- ``pi`` (n, K): probability of each artwork slot of the row's title (see ``LogArrays``); fixed
  policies give it as ``coded = (codes, rows)``, ``pi[i] = rows[codes[i]]`` (one row per title and
  candidate set), so estimators work on the few distinct rows and ``pi`` is built only if asked for;
- ``pi_chosen`` (n,): probability of the artwork that was actually logged;
- ``accepted`` (n,) or None: for learning policies, the rows replay accepted and learned from.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Protocol

import numpy as np

from replay.errors import ReplayError

if TYPE_CHECKING:
    from bandit.thompson import ThompsonSampling
    from replay.logs import LogArrays


class PolicyError(ReplayError):
    """A policy cannot be built or applied; the message says which and why."""


class PolicyOutput:
    """A policy's probabilities on every row: ``pi`` dense, or ``coded`` (codes, rows) with pi = rows[codes]."""

    def __init__(self, pi: np.ndarray | None, pi_chosen: np.ndarray, accepted: np.ndarray | None = None,
                 warnings: tuple[str, ...] = (), coded: tuple[np.ndarray, np.ndarray] | None = None):
        if pi is None and coded is None:
            raise ValueError("PolicyOutput needs pi or coded")
        if pi is not None:
            self.__dict__["pi"] = pi
        self.pi_chosen, self.accepted, self.warnings, self.coded = pi_chosen, accepted, warnings, coded

    @cached_property
    def pi(self) -> np.ndarray:
        codes, rows = self.coded
        return np.take(rows, codes, axis=0)


class Policy(Protocol):
    name: str

    def evaluate(self, logs: LogArrays, rng: np.random.Generator) -> PolicyOutput: ...


# Impressions of a title between two recomputations of a Thompson learner's action distribution,
# in every simulation (simulate, compare) and replay: the service likewise acts on a counts
# snapshot, not on every click; 50 keeps a title's snapshot stale for well under a percent of a
# 10k-impression run while one quadrature per refresh keeps million-row replays affordable.
REFRESH = 50


@dataclass(frozen=True)
class PolicyOptions:
    """Knobs shared by policy factories (the CLI fills them from flags)."""

    ts_batch: int = REFRESH
    ts_prior: tuple[float, float] = (1.0, 1.0)
    ts_segment_strength: float = 200.0
    ts_uniform_mix: float = 0.01

    def thompson(self) -> ThompsonSampling:
        from bandit.thompson import ThompsonSampling  # scipy: not needed to print --help

        return ThompsonSampling(self.ts_prior, self.ts_segment_strength, self.ts_uniform_mix)


