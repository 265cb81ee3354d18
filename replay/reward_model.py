"""The reward model q_hat(x, a) that DM and DR need.

Expected reward per (title, artwork, segment), estimated by cell means shrunk towards the
(title, artwork) mean, itself shrunk towards the overall mean (pseudo-count ``strength`` at each
level), so sparse cells borrow from their parents instead of being 0/1 noise. Where the logs
carry numeric context features, a ridge regression per artwork slot on the standardized
features is fitted to the residuals and added (clipped to [0, 1]).

Every fitted quantity is a sum over rows (cell counts, reward sums, X'X, X'r), so the model can
also be fitted per partition and combined.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from replay.logs import LogArrays


@dataclass(frozen=True)
class RewardModel:
    cell: np.ndarray  # (T, K, S) expected reward per title, slot, segment
    mean: np.ndarray | None = None  # (d,) feature means
    scale: np.ndarray | None = None  # (d,) feature scales
    coef: np.ndarray | None = None  # (K, d) ridge coefficients per slot

    def predict(self, logs: LogArrays, start: int = 0, stop: int | None = None) -> np.ndarray:
        """q_hat for rows [start, stop) of ``logs``: (m, K), 0 on slots that are not candidates."""
        s = slice(start, stop)
        q = self.cell[logs.title[s], :, logs.segment[s]]
        if self.coef is not None and logs.features is not None:
            x = (logs.features[s] - self.mean) / self.scale
            q = np.clip(q + x @ self.coef.T, 0.0, 1.0)
        q *= logs.mask[s]  # in place: q is a fresh gather, and a second (n, K) copy is the peak
        return q


def fit_reward_model(logs: LogArrays, strength: float = 20.0, ridge: float = 10.0) -> RewardModel:
    """Fit on all rows of ``logs``; ``strength`` and ``ridge`` are pseudo-counts / L2 penalty."""
    if not strength > 0:
        raise ValueError(f"strength must be > 0, got {strength!r}")
    if not ridge >= 0:
        raise ValueError(f"ridge must be >= 0, got {ridge!r}")
    t_n, k, s_n = len(logs.titles), logs.k, len(logs.segments)
    idx = (logs.title.astype(np.int64) * k + logs.action) * s_n + logs.segment
    n = np.bincount(idx, minlength=t_n * k * s_n).reshape(t_n, k, s_n).astype(float)
    r = np.bincount(idx, weights=logs.reward, minlength=t_n * k * s_n).reshape(t_n, k, s_n)
    overall = logs.reward.mean()
    n_ta, r_ta = n.sum(axis=2), r.sum(axis=2)
    title_art = (r_ta + strength * overall) / (n_ta + strength)
    cell = (r + strength * title_art[:, :, None]) / (n + strength)
    if logs.features is None or logs.features.shape[1] == 0:
        return RewardModel(cell)
    x = logs.features
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    z = (x - mean) / scale
    resid = logs.reward - cell[logs.title, logs.action, logs.segment]
    d = z.shape[1]
    coef = np.zeros((k, d))
    for j in range(k):
        rows = logs.action == j
        if rows.sum() > d:
            zj = z[rows]
            coef[j] = np.linalg.solve(zj.T @ zj + ridge * np.eye(d), zj.T @ resid[rows])
    return RewardModel(cell, mean, scale, coef)
