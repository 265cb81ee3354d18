"""Fixed policies (uniform, logged, ab, table) and Thompson sampling, to evaluate offline.

The contract is in ``replay.policy_base``; names map to factories in ``replay.policy_registry``.
Fixed policies only implement ``coded(logs)`` (a row of probabilities per title and candidate set). Learning policies (``thompson`` here,
``vw`` in ``replay.vw_replay``) replay the log in order and update on the rows they accept
(Li et al. 2011), and report the distribution they had at each row, which IPS/SNIPS/DR then use.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bandit.ab_assignment import ABSplit, assign
from replay.policy_base import Policy, PolicyError, PolicyOptions, PolicyOutput
from replay.simulation.thompson import ThompsonLearner

if TYPE_CHECKING:  # fixed policies need neither scipy (Thompson) nor pandas (logs)
    from replay.logs import LogArrays


class FixedPolicy:
    """A policy whose probabilities do not depend on the rewards it sees."""

    name = "fixed"

    def coded(self, logs: LogArrays) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover - interface
        """(codes (n,), rows (C, K)): row i's probabilities are rows[codes[i]]."""
        raise NotImplementedError

    def evaluate(self, logs: LogArrays, rng: np.random.Generator) -> PolicyOutput:
        codes, rows = self.coded(logs)
        flat = codes.astype(np.int64) * rows.shape[1]
        flat += logs.action
        return PolicyOutput(None, np.take(rows.reshape(-1), flat), coded=(codes, rows))


def _normalize_rows(pi: np.ndarray) -> np.ndarray:
    total = pi.sum(axis=1, keepdims=True)
    return np.divide(pi, total, out=np.zeros_like(pi), where=total > 0)


@dataclass(frozen=True)
class UniformPolicy(FixedPolicy):
    """Every candidate artwork of the row with equal probability."""

    name: str = "uniform"

    def coded(self, logs: LogArrays) -> tuple[np.ndarray, np.ndarray]:
        return logs.combo, _normalize_rows(logs.combo_mask.astype(float))


@dataclass(frozen=True)
class LoggedPolicy:
    """The logging policy itself: its value is the on-policy average reward.

    Only the logged artwork's probability is known, so ``pi`` is the one-hot of the logged
    action: an unbiased one-draw sample of the logging distribution, which is all DM/DR need.
    """

    name: str = "logged"

    def evaluate(self, logs: LogArrays, rng: np.random.Generator) -> PolicyOutput:
        return PolicyOutput(None, logs.propensity.copy(), accepted=np.ones(logs.n, dtype=bool),
                            coded=(logs.action, np.eye(logs.k)))


@dataclass(frozen=True)
class TablePolicy(FixedPolicy):
    """A fixed stochastic policy: ``table[title][artwork] = probability`` (absent artwork: 0)."""

    table: dict[str, dict[str, float]] = field(default_factory=dict)
    name: str = "table"

    def coded(self, logs: LogArrays) -> tuple[np.ndarray, np.ndarray]:
        missing = [t for t in logs.titles if t not in self.table]
        if missing:
            raise PolicyError(f"policy {self.name}: no probabilities for title {missing[0]!r} ({len(missing)} titles missing)")
        per_title = np.zeros((len(logs.titles), logs.k))
        for t, title in enumerate(logs.titles):
            probs = self.table[title]
            per_title[t, : len(logs.arms[t])] = [probs.get(a, 0.0) for a in logs.arms[t]]
        per_combo = per_title[logs.combo_title]
        if logs.has_candidates:
            # The row's candidates are what could be shown: renormalize over them.
            per_combo = _normalize_rows(per_combo * logs.combo_mask)
        return logs.combo, per_combo  # a row per title x candidate set


def read_policy_table(path: str | Path) -> dict[str, dict[str, float]]:
    """Read a ``title,artwork,probability`` CSV; per title the probabilities must sum to 1."""
    path = Path(path)
    if not path.is_file():
        raise PolicyError(f"policy table {path}: no such file")
    table: dict[str, dict[str, float]] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        need = ("title", "artwork", "probability")
        if reader.fieldnames is None or any(c not in reader.fieldnames for c in need):
            raise PolicyError(f"policy table {path}: needs columns {','.join(need)}, got {reader.fieldnames}")
        for line, row in enumerate(reader, start=2):
            title, art, raw = (row.get("title") or "").strip(), (row.get("artwork") or "").strip(), row.get("probability")
            if not title or not art:
                raise PolicyError(f"policy table {path}: line {line}: empty title or artwork")
            try:
                p = float(raw)  # type: ignore[arg-type]
            except (TypeError, ValueError):
                raise PolicyError(f"policy table {path}: line {line}, column 'probability': not a number: {raw!r}") from None
            if not (0.0 <= p <= 1.0) or math.isnan(p):
                raise PolicyError(f"policy table {path}: line {line}, column 'probability': must be in [0, 1], got {p}")
            if art in table.setdefault(title, {}):
                raise PolicyError(f"policy table {path}: line {line}: artwork {art!r} listed twice for title {title!r}")
            table[title][art] = p
    if not table:
        raise PolicyError(f"policy table {path}: no rows")
    for title, probs in table.items():
        total = sum(probs.values())
        if abs(total - 1.0) > 1e-6:
            raise PolicyError(f"policy table {path}: probabilities of title {title!r} sum to {total:.6g}, not 1")
    return table


@dataclass(frozen=True)
class ABPolicy(FixedPolicy):
    """The service's fixed split of policy ``ab``, by profile (deterministic, so ``pi`` is one-hot).

    ``splits[title] = (artworks, weights, salt)`` as configured in the catalog (``ab:CATALOG``,
    the service's ``ab.salt`` / ``ab.weights``, and the title's secret salt when the file comes from
    ``artwork-ops export-catalog``); titles without one get an equal split salted with the title
    id over the title's artworks in catalog order (the order of the logs' ``candidates``; without
    that column, sorted): the service's split in shape, not its assignment, since the service
    salts with a secret.
    """

    splits: dict[str, tuple[tuple[str, ...], tuple[float, ...], str]] = field(default_factory=dict)
    name: str = "ab"

    def _split(self, title: str, arms: tuple[str, ...]) -> ABSplit:
        if title not in self.splits:
            return ABSplit.equal(arms, salt=title)
        artworks, weights, salt = self.splits[title]
        return ABSplit(artworks, weights, salt)

    def coded(self, logs: LogArrays) -> tuple[np.ndarray, np.ndarray]:
        n_prof = len(logs.profiles)
        pair = logs.title.astype(np.int64) * n_prof + logs.profile
        uniq, inverse = np.unique(pair, return_inverse=True)
        splits = [self._split(title, arms) for title, arms in zip(logs.titles, logs.arms, strict=True)]
        slot = np.empty(uniq.size, dtype=np.int64)
        for j, p in enumerate(uniq.tolist()):
            t = p // n_prof
            arm = assign(splits[t], logs.profiles[p % n_prof]).arm
            if arm not in logs.arms[t]:
                raise PolicyError(f"policy {self.name}: title {logs.titles[t]!r}'s split assigns {arm!r}, "
                                  "which is not among the logs' artworks for the title")
            slot[j] = logs.arms[t].index(arm)
        return slot[inverse], np.eye(logs.k)  # one-hot: row i is the slot its profile is assigned


@dataclass(frozen=True)
class ThompsonPolicy:
    """Thompson sampling learning as it replays (``replay.simulation.thompson.ThompsonLearner``,
    the learner simulations run online, refreshed every ``options.ts_batch`` of a title's accepted rows)."""

    options: PolicyOptions = PolicyOptions()
    name: str = "thompson"

    def evaluate(self, logs: LogArrays, rng: np.random.Generator,
                 on_progress: Callable[[int], None] | None = None) -> PolicyOutput:
        arms = np.array([len(a) for a in logs.arms])
        learner = ThompsonLearner(self.options.thompson(), arms, len(logs.segments), logs.k,
                                  logs.has_segment, self.options.ts_batch)
        n = logs.n
        pi = np.empty((n, logs.k))
        accepted = np.zeros(n, dtype=bool)
        u = rng.random(n)
        # Rejection bound M = 1 / min propensity >= pi/mu for every row, fixed before learning
        # starts, as replay of a learning policy requires.
        ratio_scale = logs.propensity.min() / logs.propensity
        start, window = 0, 4096
        while start < n:
            stop = min(n, start + window)
            t, g, a = logs.title[start:stop], logs.segment[start:stop], logs.action[start:stop]
            p = learner.probs[t, g]
            if logs.has_candidates:
                p = _normalize_rows(p * logs.mask[start:stop])
            acc = u[start:stop] < p[np.arange(stop - start), a] * ratio_scale[start:stop]
            acc_rows = np.flatnonzero(acc)
            j = learner.first_refresh(t[acc_rows])
            end = stop if j < 0 else start + int(acc_rows[j]) + 1
            m = end - start
            pi[start:end] = p[:m]
            accepted[start:end] = acc[:m]
            keep = acc_rows[acc_rows < m]
            learner.update(t[keep], g[keep], a[keep], logs.reward[start:end][keep])
            if j >= 0:
                learner.refresh(int(t[acc_rows[j]]))
                window = max(1024, 2 * m)
            else:
                window = min(window * 2, 1 << 18)
            start = end
            if on_progress is not None:
                on_progress(start)
        pi_chosen = pi[np.arange(n), logs.action]
        return PolicyOutput(pi, pi_chosen, accepted=accepted)


def _no_arg(cls):
    def make(arg: str | None, options: PolicyOptions) -> Policy:
        if arg:
            raise PolicyError(f"policy {cls().name!r} takes no argument, got {arg!r}", arg)
        return cls()

    return make


make_uniform, make_logged = _no_arg(UniformPolicy), _no_arg(LoggedPolicy)


def make_ab(arg: str | None, options: PolicyOptions) -> Policy:
    """``ab``: the service's default split of every title; ``ab:CATALOG.json``: the catalog's splits."""
    if not arg:
        return ABPolicy()
    from service.catalog import load_catalog_file  # the service's own parser: same defaults, same checks
    from service.errors import ServiceError

    try:
        titles = load_catalog_file(arg)
    except ServiceError as exc:
        raise PolicyError(f"policy ab:{arg}: {exc.message}", arg) from None
    splits = {t.id: (t.artwork_ids, t.ab_split().weights, t.ab_split().salt) for t in titles}
    return ABPolicy(splits, name=f"ab:{arg}")


def make_table(arg: str | None, options: PolicyOptions) -> Policy:
    if not arg:
        raise PolicyError("policy 'table' needs a CSV path: table:PATH", "table")
    return TablePolicy(read_policy_table(arg), name=f"table:{arg}")


def make_thompson(arg: str | None, options: PolicyOptions) -> Policy:
    if arg:
        raise PolicyError(f"policy 'thompson' takes no argument, got {arg!r} (use --ts-batch)", arg)
    return ThompsonPolicy(options)
