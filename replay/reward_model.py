"""The reward model q_hat(x, a) that DM and DR need, with what DM needs for an honest interval.

Model: q(x, a) = o[t, a, g] + z(x) . beta[a], clipped to [0, 1], where t is the title, a the
artwork slot, g the segment and z the standardized numeric context features (when the logs have
any). ``o`` are cell means of r - z . beta per (title, artwork, segment), shrunk towards the
(title, artwork) mean, itself shrunk towards the overall mean (pseudo-count ``strength`` at each
level), so sparse cells borrow from their parents. Rows are weighted by their inverse logging
propensity (normalized to mean 1): under adaptive logging (a bandit) plain cell means are biased
down, because an artwork that was unlucky early is then served less and its low mean persists;
the weighted means are not (under uniform logging the weights are all 1). ``beta[a]`` is a ridge regression per slot on
features centred within each cell (fixed effects): every artwork keeps its own intercept, so the
model stays consistent when the logging policy depends on the context (a slope fitted without
the per-artwork intercept would absorb the difference between the contexts each artwork was
logged in).

The fitted cell means are linear in the rewards, so DM's dependence on each logged reward is
known in closed form (``dm_weights``): DM = sum_cells M_c q_c with M_c the target policy's mass
on cell c. Its variance is the spread of the per-row model values plus sum_j (dDM/dr_j)^2 e_j^2
(delta method over the model's parameters, e_j the held-out residual), which is what makes DM's
interval include the model's estimation error.

Every fit is made from sums over rows (``CellSums``: per fold, cell and slot, the ridge slopes'
normal equations included), which partitions of a log add up, so the partitioned engine fits
the models the in-memory one does. ``cross_fit`` predicts every row from a model fitted without that row's fold (K folds), which
DR needs (a row's own reward must not be in the model that corrects it) and which gives the
held-out fit that the poor-model warning uses.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np

from replay.draws import splitmix64
from replay.errors import ReplayError
from replay.logs import LogArrays

DEFAULT_FOLDS = 5


class RewardModelError(ReplayError):
    """A reward-model argument is malformed; the message names it."""


@dataclass(frozen=True, eq=False)
class RewardModel:
    cell: np.ndarray  # (T, K, S) offsets o (shrunk cell means of r - z.beta)
    count: np.ndarray  # (T, K, S) rows per cell in the fit
    strength: float
    n: float  # (weighted) rows in the fit
    weight_scale: float  # row weight = weight_scale / propensity
    mean: np.ndarray | None = None  # (d,) feature means
    scale: np.ndarray | None = None  # (d,) feature scales
    coef: np.ndarray | None = None  # (K, d) ridge coefficients per slot
    cell_z: np.ndarray | None = None  # (T, K, S, d) shrunk cell means of z
    hessian_inv: np.ndarray | None = None  # (K, d, d) (Z~'Z~ + ridge I)^-1 per slot

    def z(self, logs: LogArrays, rows: np.ndarray | slice = slice(None)) -> np.ndarray | None:
        if self.coef is None or logs.features is None:
            return None
        return (logs.features[rows] - self.mean) / self.scale

    def predict(self, logs: LogArrays, rows: np.ndarray | slice = slice(None)) -> np.ndarray:
        """q_hat for ``rows`` of ``logs``: (m, K), 0 on slots that are not candidates."""
        q = self.cell[logs.title[rows], :, logs.segment[rows]]
        z = self.z(logs, rows)
        if z is not None:
            q = q + z @ self.coef.T
        np.clip(q, 0.0, 1.0, out=q)
        q *= logs.mask[rows]  # in place: q is a fresh gather, and a second (n, K) copy is the peak
        return q

    def mass_sums(self, logs: LogArrays, pi: np.ndarray | tuple[np.ndarray, np.ndarray]
                  ) -> tuple[np.ndarray, np.ndarray | None]:
        """n M[t, a, g] (the target's summed mass on each cell) and, with features, sum_i pi_ia z_i:
        additive over partitions of the rows. ``pi`` as in ``dm_weights``."""
        n = logs.n
        t_n, k, s_n = self.cell.shape
        features = self.coef is not None and logs.features is not None
        z = self.z(logs) if features else None
        pz = None
        # Summed by bincount over integer cell codes (no (n, K) temporaries beyond what the caller passed).
        if isinstance(pi, tuple):
            codes, rows = pi
            # Rows counted per (code, title x candidate set, segment): the target's mass on a cell is
            # then a product of small tables (mask: the candidate set's slots).
            n_m = logs.combo_mask.shape[0]
            key = codes.astype(np.int64) * n_m
            key += logs.combo
            cs = np.bincount(key * s_n + logs.segment, minlength=rows.shape[0] * n_m * s_n)
            cs = cs.reshape(rows.shape[0], n_m, s_n).astype(float)
            on = rows[:, None, :] * logs.combo_mask[None, :, :]  # (C, M, K)
            per_combo = np.einsum("cmg,cma->mag", cs, on)
            mass = np.zeros((t_n, k, s_n))
            np.add.at(mass, logs.combo_title, per_combo)
            if features:
                zs = np.stack([np.bincount(key, weights=z[:, j], minlength=rows.shape[0] * n_m)
                               for j in range(z.shape[1])], axis=-1).reshape(rows.shape[0], n_m, -1)
                pz = np.einsum("cmd,cma->ad", zs, on)
        elif pi.ndim == 1:
            h = pi * logs.mask[np.arange(n), logs.action]
            cell_idx = (logs.title.astype(np.int64) * k + logs.action) * s_n + logs.segment
            mass = np.bincount(cell_idx, weights=h, minlength=t_n * k * s_n).reshape(t_n, k, s_n)
            if features:
                pz = np.stack([np.bincount(logs.action, weights=h * z[:, j], minlength=k) for j in range(z.shape[1])],
                              axis=-1)
        else:
            tg = logs.title.astype(np.int64) * s_n + logs.segment
            mass = np.stack([np.bincount(tg, weights=np.where(logs.mask[:, a], pi[:, a], 0.0), minlength=t_n * s_n)
                             for a in range(k)], axis=-1).reshape(t_n, s_n, k).transpose(0, 2, 1)
            if features:
                pz = np.where(logs.mask, pi, 0.0).T @ z
        return mass, pz

    def dm_weights(self, logs: LogArrays, pi: np.ndarray | tuple[np.ndarray, np.ndarray] | None,
                   sums: tuple[np.ndarray, np.ndarray | None] | None = None, n: int | None = None) -> np.ndarray:
        """n * dDM/dr_j for every row j of ``logs`` (the rows the model was fitted on).

        DM = (1/n) sum_i sum_a pi[i, a] q(x_i, a). A row's weight is the target's mass on its
        cell divided by the cell's (shrunk) count, plus its share through the parent means and
        the slope: the model-based analogue of an importance weight. ``pi`` is (n, K); or (n,):
        mass on each row's logged artwork only (what DR's correction needs, without an (n, K) one-hot);
        or coded, (codes, rows) with pi[i] = rows[codes[i]] (``PolicyOutput.coded``).
        When ``logs`` is one partition of the log: ``sums``, the whole log's ``mass_sums``, and its rows ``n``.
        """
        if sums is None:
            sums, n = self.mass_sums(logs, pi), logs.n
        mass, pz = sums[0] / n, sums[1]
        t_n, k, s_n = self.cell.shape
        features = self.coef is not None and logs.features is not None
        z = self.z(logs) if features else None
        s = self.strength
        n_c = self.count
        n_ta = n_c.sum(axis=2)
        a_c = mass / (n_c + s)
        b_ta = s * a_c.sum(axis=2) / (n_ta + s)
        c_all = s * b_ta.sum() / self.n
        # In place over one (n,) code array: this runs on every row twice per policy (DM, DR).
        code = logs.title.astype(np.int64)
        code *= k
        code += logs.action
        parent = b_ta.reshape(-1)[code]
        code *= s_n
        code += logs.segment
        grad = a_c.reshape(-1)[code]
        del code
        grad += parent
        del parent
        grad += c_all
        if features:
            # dDM/dbeta_a = (1/n) sum_i pi_ia z_i - sum_c M_c zbar_c; dbeta_a/dr_j = H_a^-1 z~_j.
            g = pz / n - np.einsum("tag,tagd->ad", mass, self.cell_z)
            zt = z - self.cell_z[logs.title, logs.action, logs.segment]
            hg = np.einsum("adk,ak->ad", self.hessian_inv, g)
            grad = grad + np.einsum("jd,jd->j", zt, hg[logs.action])
        out = self.weight_scale / logs.propensity
        out *= n
        out *= grad
        return out


def _shrunk(sums: np.ndarray, count: np.ndarray, overall: np.ndarray | float, strength: float) -> np.ndarray:
    """Cell means from weighted cell sums (T, K, S) or (T, K, S, d), shrunk to (title, artwork), then to ``overall``."""
    extra = (None,) * (sums.ndim - 3)
    n_ta, r_ta = count.sum(axis=2), sums.sum(axis=2)
    title_art = (r_ta + strength * overall) / (n_ta + strength)[(..., *extra)]
    return (sums + strength * title_art[:, :, None]) / (count + strength)[(..., *extra)]


@dataclass(frozen=True, eq=False)
class CellSums:
    """Sufficient statistics of the reward model per fold: additive over rows, so partitions (or
    chunks) of a log combine by adding them, and fold f's model is fitted from the other folds'
    sums (``model``). Cells are (title, artwork slot, segment) flattened; ``shape`` unflattens them.

    With context features x (shifted by ``shift``, a constant near their mean, so the moments below
    do not cancel), the ridge slopes' normal equations come from the same kind of sums: per fold
    the plain sums of x and x^2 (the standardization), per fold and cell the 1/propensity-weighted
    sum of x (the cells' feature means), per fold and slot the weighted sums of x x' and x r.
    """

    shape: tuple[int, int, int]
    rows: np.ndarray  # (F, C) rows
    inv: np.ndarray  # (F, C) sum of 1 / propensity
    inv_r: np.ndarray  # (F, C) sum of reward / propensity
    reward: np.ndarray  # (F,) sum of rewards
    shift: np.ndarray | None = None  # (d,) subtracted from the features before every sum below
    x: np.ndarray | None = None  # (F, d) sum of x
    xx: np.ndarray | None = None  # (F, d) sum of x^2
    inv_x: np.ndarray | None = None  # (F, C, d) sum of x / propensity
    inv_xx: np.ndarray | None = None  # (F, K, d, d) sum of x x' / propensity per logged slot
    inv_xr: np.ndarray | None = None  # (F, K, d) sum of x r / propensity per logged slot

    @staticmethod
    def of(logs: LogArrays, fold: np.ndarray, folds: int, shift: np.ndarray | None = None) -> CellSums:
        """``shift``: the features' offset (default: their mean over ``logs``; the partitioned
        engine passes the whole log's, so that partitions' sums add)."""
        shape = (len(logs.titles), logs.k, len(logs.segments))
        size = int(np.prod(shape))
        key = logs.title.astype(np.int64)
        key *= shape[1]
        key += logs.action
        key *= shape[2]
        key += logs.segment
        key += fold * size
        inv = 1.0 / logs.propensity
        rows = np.bincount(key, minlength=folds * size).reshape(folds, size).astype(float)
        s_inv = np.bincount(key, weights=inv, minlength=folds * size).reshape(folds, size)
        inv_r = inv * logs.reward
        s_inv_r = np.bincount(key, weights=inv_r, minlength=folds * size).reshape(folds, size)
        out = CellSums(shape, rows, s_inv, s_inv_r, np.bincount(fold, weights=logs.reward, minlength=folds))
        if logs.features is None or logs.features.shape[1] == 0:
            return out
        shift = logs.features.mean(axis=0) if shift is None else np.asarray(shift, float)
        d, k = logs.features.shape[1], shape[1]
        slot = fold * k + logs.action
        per_fold, per_slot = np.zeros((folds, d, 2)), np.zeros((folds * k, d, d + 1))
        inv_x = np.zeros((folds * size, d))
        for i in range(d):
            xi = logs.features[:, i] - shift[i]
            per_fold[:, i, 0] = np.bincount(fold, weights=xi, minlength=folds)
            per_fold[:, i, 1] = np.bincount(fold, weights=xi * xi, minlength=folds)
            w = inv * xi
            inv_x[:, i] = np.bincount(key, weights=w, minlength=folds * size)
            per_slot[:, i, d] = np.bincount(slot, weights=w * logs.reward, minlength=folds * k)
            for j in range(i + 1):
                per_slot[:, i, j] = per_slot[:, j, i] = np.bincount(
                    slot, weights=w * (logs.features[:, j] - shift[j]), minlength=folds * k)
        per_slot = per_slot.reshape(folds, k, d, d + 1)
        return replace(out, shift=shift, x=per_fold[..., 0], xx=per_fold[..., 1], inv_x=inv_x.reshape(folds, size, d),
                       inv_xx=per_slot[..., :d], inv_xr=per_slot[..., d])

    def __add__(self, other: CellSums) -> CellSums:
        def add(a, b):
            return None if a is None else a + b

        return CellSums(self.shape, self.rows + other.rows, self.inv + other.inv, self.inv_r + other.inv_r,
                        self.reward + other.reward, self.shift, add(self.x, other.x), add(self.xx, other.xx),
                        add(self.inv_x, other.inv_x), add(self.inv_xx, other.inv_xx), add(self.inv_xr, other.inv_xr))

    def model(self, folds: np.ndarray | slice = slice(None), strength: float = 20.0, ridge: float = 10.0) -> RewardModel:
        """The model fitted on the rows of ``folds``: cell offsets and, with features, per-slot
        ridge slopes on the standardized features centred within each cell (module docstring)."""
        if not strength > 0:
            raise RewardModelError(f"strength must be > 0, got {strength!r}")
        if not ridge > 0:
            raise RewardModelError(f"ridge must be > 0, got {ridge!r}")
        n_rows = float(self.rows[folds].sum())
        if n_rows == 0:
            raise RewardModelError("rows must select at least one row")
        s_inv, s_inv_r = self.inv[folds].sum(axis=0), self.inv_r[folds].sum(axis=0)
        scale_w = n_rows / float(s_inv.sum())
        count = (s_inv * scale_w).reshape(self.shape)
        sums = (s_inv_r * scale_w).reshape(self.shape)
        cell_r = _shrunk(sums, count, float(s_inv_r.sum()) / float(s_inv.sum()), strength)
        if self.inv_x is None:
            return RewardModel(cell_r, count, strength, float(count.sum()), scale_w)
        # Standardization: z = (x - mean) / scale over the fit's rows (population standard deviation).
        m = self.x[folds].sum(axis=0) / n_rows  # mean of the shifted features
        var = np.maximum(self.xx[folds].sum(axis=0) / n_rows - m * m, 0.0)
        scale = np.sqrt(var)
        scale = np.where(scale > 0, scale, 1.0)
        d = m.size
        s_inv_x = self.inv_x[folds].sum(axis=0)  # (C, d)
        z1 = (scale_w * (s_inv_x - s_inv[:, None] * m) / scale).reshape(*self.shape, d)  # sum_c v z
        cell_z = _shrunk(z1, count, z1.sum(axis=(0, 1, 2)) / count.sum(), strength)
        # Per slot: sum v z z' and sum v z r from the raw sums, then centred within each cell.
        inv_k = s_inv.reshape(self.shape).sum(axis=(0, 2))
        inv_r_k = s_inv_r.reshape(self.shape).sum(axis=(0, 2))
        x_k = s_inv_x.reshape(*self.shape, d).sum(axis=(0, 2))
        outer = np.outer(scale, scale)
        zz = scale_w * (self.inv_xx[folds].sum(axis=0) - x_k[:, :, None] * m[None, None, :]
                        - m[None, :, None] * x_k[:, None, :] + inv_k[:, None, None] * np.outer(m, m)) / outer
        zr = scale_w * (self.inv_xr[folds].sum(axis=0) - inv_r_k[:, None] * m) / scale
        cross = np.einsum("tkgd,tkge->kde", cell_z, z1)
        hessian = (zz - cross - cross.transpose(0, 2, 1) + np.einsum("tkg,tkgd,tkge->kde", count, cell_z, cell_z)
                   + ridge * np.eye(d))
        grad = (zr - np.einsum("tkgd,tkg->kd", cell_z, sums) - np.einsum("tkgd,tkg->kd", z1, cell_r)
                + np.einsum("tkg,tkgd,tkg->kd", count, cell_z, cell_r))
        h_inv = np.linalg.inv(hessian)
        coef = np.einsum("kde,ke->kd", h_inv, grad)
        offset = cell_r - np.einsum("tagd,ad->tag", cell_z, coef)
        return RewardModel(offset, count, strength, float(count.sum()), scale_w, m + self.shift, scale, coef, cell_z,
                           h_inv)

    def collapsed(self) -> CellSums:
        """The same sums as one fold."""
        def one(a):
            return None if a is None else a.sum(axis=0, keepdims=True)

        return CellSums(self.shape, one(self.rows), one(self.inv), one(self.inv_r), one(self.reward), self.shift,
                        one(self.x), one(self.xx), one(self.inv_x), one(self.inv_xx), one(self.inv_xr))

    def mean_reward(self, folds: np.ndarray | slice) -> float:
        return float(self.reward[folds].sum() / self.rows[folds].sum())


def fit_reward_model(logs: LogArrays, strength: float = 20.0, ridge: float = 10.0,
                     rows: np.ndarray | None = None) -> RewardModel:
    """Fit on ``rows`` of ``logs`` (default all); ``strength`` and ``ridge`` are pseudo-counts / L2 penalty."""
    if rows is None:
        return CellSums.of(logs, np.zeros(logs.n, dtype=np.int64), 1).model(strength=strength, ridge=ridge)
    fold = np.ones(logs.n, dtype=np.int64)
    fold[np.asarray(rows)] = 0
    return CellSums.of(logs, fold, 2).model(np.array([0]), strength, ridge)


def fold_predictions(logs: LogArrays, models: list[RewardModel], fold: np.ndarray
                     ) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """Every row predicted by its own fold's model: (q_table, q_code, None) without features (row
    i is ``q_table[q_code[i]]`` masked), (None, None, dense (n, K)) with them."""
    table = np.stack([m.cell.transpose(0, 2, 1) for m in models])  # (F, T, S, K)
    code = fold * table.shape[1] + logs.title
    code *= table.shape[2]
    code += logs.segment
    table = table.reshape(-1, logs.k)
    if models[0].coef is None or logs.features is None:
        return np.clip(table, 0.0, 1.0), code, None
    q = np.take(table, code, axis=0)
    for f, m in enumerate(models):
        out = np.flatnonzero(fold == f) if len(models) > 1 else slice(None)
        q[out] += m.z(logs, out) @ m.coef.T
    np.clip(q, 0.0, 1.0, out=q)
    q *= logs.mask
    return None, None, q


@dataclass(frozen=True, eq=False)
class CrossFit:
    """Held-out predictions of every row, the model on all rows, and the held-out fit.

    Without context features a row's prediction depends only on its (fold, title, segment): row i
    is ``q_table[q_code[i]]`` (masked to its candidates), so DM and DR work on that small table
    and ``q_hat`` (n, K) is built only when asked for. With features, ``dense`` holds it.
    """

    model: RewardModel  # fitted on every row (for DM's weights)
    folds: int
    mse: float  # held-out mean squared error of q_hat on the logged artwork
    baseline_mse: float  # the same for the held-out mean reward (a constant model)
    mask: np.ndarray  # (n, K) candidates per row
    action: np.ndarray  # (n,) logged slot per row
    q_table: np.ndarray | None = None  # (F * T * S, K)
    q_code: np.ndarray | None = None  # (n,) row of q_table per row
    dense: np.ndarray | None = None  # (n, K) with features

    @cached_property
    def q_hat(self) -> np.ndarray:
        """(n, K): row i predicted by the model fitted without i's fold."""
        if self.dense is not None:
            return self.dense
        q = np.take(self.q_table, self.q_code, axis=0)
        q *= self.mask
        return q

    @cached_property
    def q_chosen(self) -> np.ndarray:
        """(n,) held-out prediction at each row's logged artwork."""
        return _chosen(self.action, self.q_table, self.q_code, self.dense)


def _chosen(action: np.ndarray, table: np.ndarray | None, code: np.ndarray | None, dense: np.ndarray | None) -> np.ndarray:
    if dense is not None:
        return dense[np.arange(dense.shape[0]), action]
    flat = code * table.shape[1]
    flat += action
    return np.take(table.reshape(-1), flat)


def assign_folds(logs: LogArrays, rng: np.random.Generator, folds: int) -> np.ndarray:
    """Each row's fold: a hash of its ``row_key`` (its timestamp; else its position) salted by one draw
    from ``rng``. A function of the row alone, so partitions of a log get the folds the whole log gets."""
    key = logs.row_key if logs.row_key is not None else np.arange(logs.n, dtype=np.uint64)
    return fold_of(key, int(rng.integers(2**63)), folds)


def single_fold(rows_per_fold: np.ndarray) -> bool:
    """Every row hashed into one fold (a tiny log): no fold has rows to fit on without it, so the
    model is fitted in sample (folds=1). Decided from the fold counts, which partitions add up."""
    return int(np.count_nonzero(rows_per_fold)) <= 1


def fold_of(key: np.ndarray, salt: int, folds: int) -> np.ndarray:
    """splitmix64 of key ^ salt, modulo ``folds`` (int64)."""
    return (splitmix64(key, salt) % np.uint64(folds)).astype(np.int64)


def cross_fit(logs: LogArrays, rng: np.random.Generator, folds: int = DEFAULT_FOLDS, **kwargs) -> CrossFit:
    """K-fold cross-fitted q_hat (rows assigned to folds by ``assign_folds``); ``folds=1`` fits in sample."""
    if folds < 1 or int(folds) != folds:
        raise RewardModelError(f"folds must be a positive integer, got {folds!r}")
    folds = min(int(folds), logs.n)
    fold = np.zeros(logs.n, dtype=np.int64) if folds == 1 else assign_folds(logs, rng, folds)
    if folds > 1 and single_fold(np.bincount(fold, minlength=folds)):
        folds, fold = 1, np.zeros(logs.n, dtype=np.int64)
    # Every fold's model from the (fold, cell) sums: one pass over the rows, not one per fold.
    sums = CellSums.of(logs, fold, folds)
    model = sums.model(**kwargs)
    others = [np.flatnonzero(np.arange(folds) != f) if folds > 1 else slice(None) for f in range(folds)]
    models = [sums.model(o, **kwargs) for o in others] if folds > 1 else [model]
    means = np.array([sums.mean_reward(o) for o in others])
    q_table, code, q = fold_predictions(logs, models, fold)
    chosen = _chosen(logs.action, q_table, code, q)
    mse = float(np.mean((logs.reward - chosen) ** 2))
    base = float(np.mean((logs.reward - means[fold]) ** 2))
    return CrossFit(model, folds, mse, base, logs.mask, logs.action, q_table, code, q)
