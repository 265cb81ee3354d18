"""Deterministic fixed-split assignment, as experimentation platforms do it.

A unit (profile) is hashed with the experiment's salt into one of ``BUCKETS`` buckets; arms own
contiguous bucket ranges in proportion to their weights. The same (salt, unit) always lands in
the same arm on every worker and after restarts; a new salt reshuffles everyone independently.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from bandit.errors import BanditError

BUCKETS = 10_000


class SplitError(BanditError):
    """A split is malformed; the message names the argument."""


@dataclass(frozen=True)
class ABSplit:
    arms: tuple[str, ...]
    weights: tuple[float, ...]
    salt: str

    def __post_init__(self) -> None:
        if len(self.arms) < 1:
            raise SplitError("arms must name at least one arm")
        if len(set(self.arms)) != len(self.arms):
            raise SplitError(f"arms must be distinct, got {self.arms!r}")
        if len(self.weights) != len(self.arms):
            raise SplitError(f"weights must have one entry per arm ({len(self.arms)}), got {len(self.weights)}")
        w = np.asarray(self.weights, dtype=float)
        if not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
            raise SplitError(f"weights must be non-negative with a positive sum, got {self.weights!r}")
        if not isinstance(self.salt, str) or not self.salt:
            raise SplitError("salt must be a non-empty string")

    @classmethod
    def equal(cls, arms, salt: str) -> ABSplit:
        arms = tuple(arms)
        return cls(arms=arms, weights=tuple(1.0 / len(arms) for _ in arms) if arms else (), salt=salt)

    @property
    def shares(self) -> np.ndarray:
        """Each arm's exact share of buckets (its assignment probability)."""
        return np.diff(self._bounds()) / BUCKETS

    def _bounds(self) -> np.ndarray:
        w = np.asarray(self.weights, dtype=float)
        edges = np.rint(np.cumsum(w) / w.sum() * BUCKETS).astype(int)
        return np.concatenate(([0], edges))


@dataclass(frozen=True)
class ABAssignment:
    arm: str
    index: int
    propensity: float
    bucket: int


def bucket_of(salt: str, unit_id: str) -> int:
    digest = hashlib.sha256(f"{salt}\x1f{unit_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def assign(split: ABSplit, unit_id: str) -> ABAssignment:
    """The arm of ``unit_id``; its propensity is the arm's share of buckets."""
    if not isinstance(unit_id, str) or not unit_id:
        raise SplitError("unit_id must be a non-empty string")
    bucket = bucket_of(split.salt, unit_id)
    bounds = split._bounds()
    index = int(np.searchsorted(bounds, bucket, side="right") - 1)
    index = min(index, len(split.arms) - 1)
    return ABAssignment(
        arm=split.arms[index],
        index=index,
        propensity=float((bounds[index + 1] - bounds[index]) / BUCKETS),
        bucket=bucket,
    )
