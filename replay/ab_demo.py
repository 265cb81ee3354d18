"""The classic A/B notebook's data: simulated users split between artworks with known true CTRs.

Users are assigned by the service's own hashing (``bandit.ab_assignment``), so the demo exercises
the same split as production; clicks are Bernoulli draws from each artwork's true CTR.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from bandit.ab_assignment import ABSplit, assign
from replay.abtest import ABTestInputError

CLASSIC_CTRS: dict[str, float] = {"A": 0.24, "B": 0.30}
CLASSIC_USERS = 1_000


def simulate_split_experiment(
    n_users: int,
    true_ctrs: Mapping[str, float],
    rng: np.random.Generator,
    salt: str = "demo",
    weights: Mapping[str, float] | None = None,
) -> pd.DataFrame:
    """One row per user: ``user_id``, ``artwork`` (its arm) and ``clicked`` (0/1)."""
    if n_users <= 0:
        raise ABTestInputError("n_users", f"must be positive, got {n_users}")
    if len(true_ctrs) < 2:
        raise ABTestInputError("true_ctrs", "need at least two artworks")
    for arm, ctr in true_ctrs.items():
        if not 0 <= ctr <= 1:
            raise ABTestInputError("true_ctrs", f"CTR of {arm!r} must be in [0, 1], got {ctr!r}")
    arms = tuple(true_ctrs)
    split = (
        ABSplit.equal(arms, salt)
        if weights is None
        else ABSplit(arms, tuple(float(weights[a]) for a in arms), salt)
    )
    user_ids = [f"user{i:06d}" for i in range(n_users)]
    arm_index = np.fromiter((assign(split, u).index for u in user_ids), dtype=int, count=n_users)
    ctr = np.array([true_ctrs[a] for a in arms])[arm_index]
    clicked = (rng.random(n_users) < ctr).astype(int)
    return pd.DataFrame({"user_id": user_ids, "artwork": np.array(arms, dtype=object)[arm_index], "clicked": clicked})
