"""Evaluate several policies on one log with several estimators (what ``evaluate`` runs).

Order of work: cross-fit the reward model once (if a model-based estimator is asked for: every
row predicted by a model fitted without its fold), then per policy: its
probabilities on every row (learning policies replay the log in order), replay acceptance,
then every estimator in one chunked pass. Replay's acceptance and the bootstrap's weights are
functions of each row's key and one salt drawn after the folds' (``row_draw_keys``): every policy
and every group sees the same draws on a row (common random numbers), and a partitioned engine
draws them too. The segment breakdown reuses the same per-row
inputs (and the same replay acceptance) restricted to each group's rows (``by``: title, segment or
a numeric context key). Per group, DM's model weights are those of the whole log's model
restricted to the group's rows (the group's share of the parent means is left out).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from functools import partial

import numpy as np

from replay.draws import splitmix64
from replay.errors import ReplayError
from replay.estimators import DEFAULT_CHUNK, ESTIMATORS, Estimate, EstimatorInput, Replay, estimate_many
from replay.logs import LogArrays
from replay.policy_base import Policy, PolicyOutput
from replay.reward_model import DEFAULT_FOLDS, CrossFit, cross_fit

MODEL_BASED = frozenset({"dm", "dr", "sndr", "switchdr", "dros"})
# A learning policy that learned from fewer accepted rows than this is close to its prior.
MIN_LEARNED_ROWS = 100

BOOTSTRAP_CELLS = 2_000_000  # 16 MB of float weights per chunk (32 MB while drawn)


@dataclass(frozen=True)
class Evaluation:
    n: int
    estimates: dict[str, tuple[Estimate, ...]]  # policy name -> one per estimator, in order
    by_group: dict[str, dict[str, tuple[Estimate, ...]]] = field(default_factory=dict)  # value -> policy -> ...
    policy_warnings: dict[str, tuple[str, ...]] = field(default_factory=dict)
    by_column: str | None = None
    by_n: dict[str, int] = field(default_factory=dict)  # value -> rows


def check_by(column: str, has_segment: bool, feature_names: Sequence[str]) -> None:
    """``--by COLUMN`` names a column the logs have: title, segment or a numeric context key."""
    if column == "title" or column in feature_names or (column == "segment" and has_segment):
        return
    if column == "segment":
        raise ReplayError("--by: the logs have no segment column", "--by")
    known = ", ".join(["title", "segment", *feature_names])
    raise ReplayError(f"--by: unknown column {column!r}; known: {known} (numeric context keys only)", "--by")


def group_label(value: float) -> str:
    """A numeric context key's group label."""
    return f"{value:g}"


def group_codes(logs: LogArrays, column: str) -> tuple[np.ndarray, list[str]]:
    """Per-row group code and the groups' labels for ``--by COLUMN``: title, segment or a context key."""
    check_by(column, logs.has_segment, logs.feature_names)
    if column == "title":
        return logs.title, list(logs.titles)
    if column == "segment":
        return logs.segment, list(logs.segments)
    values = logs.features[:, logs.feature_names.index(column)]
    uniq, codes = np.unique(values, return_inverse=True)
    return codes, [group_label(v) for v in uniq]


def policy_input(logs: LogArrays, out: PolicyOutput, q_hat: np.ndarray | CrossFit | None) -> EstimatorInput:
    """Per-row inputs of one policy; with a ``CrossFit``, DM also gets the model's weights.

    A fixed policy (``out.coded``) with a feature-free model never builds (n, K) arrays: DM's
    per-row value is a table over (policy row, candidate set, model row) gathered by one code.
    """
    fit = q_hat if isinstance(q_hat, CrossFit) else None
    coded = out.coded
    common = dict(reward=logs.reward, propensity=logs.propensity, action=logs.action, pi_chosen=out.pi_chosen,
                  accepted=out.accepted, group=logs.title, pi_coded=coded)
    if fit is None:
        need_pi = q_hat is not None or coded is None
        return EstimatorInput(pi=out.pi if need_pi else None, q_hat=q_hat, **common)
    influence = partial(fit.model.dm_weights, logs)
    if coded is None or fit.q_table is None:
        return EstimatorInput(pi=out.pi, q_hat=fit.q_hat, dm_weight=fit.model.dm_weights(logs, out.pi),
                              model_influence=influence, **common)
    codes, rows = coded
    n_m, n_q = logs.combo_mask.shape[0], fit.q_table.shape[0]
    # value[c, m, g] = sum_a rows[c, a] mask[m, a] q_table[g, a]
    value = np.einsum("ca,ma,ga->cmg", rows, logs.combo_mask.astype(float), fit.q_table)
    key = codes.astype(np.int64) * n_m
    key += logs.combo
    key *= n_q
    key += fit.q_code
    dm_values = np.take(value.reshape(-1), key)
    del key
    return EstimatorInput(dm_values=dm_values, q_logged=fit.q_chosen, dm_weight=fit.model.dm_weights(logs, coded),
                          model_influence=influence, **common)


def needs_draws(estimators: Sequence[str], bootstrap: int) -> bool:
    """Whether the evaluation draws per row (and so takes a salt from the seed after the folds')."""
    return "replay" in estimators or bool(bootstrap)


def row_draw_keys(logs: LogArrays, salt: int) -> np.ndarray:
    """Each row's draw key (``replay.draws``): its event id's hash salted, else its position's."""
    key = logs.event_key if logs.event_key is not None else np.arange(logs.n, dtype=np.uint64)
    return splitmix64(key, salt)


def take(data: EstimatorInput, rows: np.ndarray) -> EstimatorInput:
    """The inputs of ``rows``. DM keeps the whole log's model weights on these rows (their parent
    terms count other groups' mass too, which errs wide); DR and its variants use their plain terms."""
    def pick(a):
        return None if a is None else a[rows]

    coded = None if data.pi_coded is None else (data.pi_coded[0][rows], data.pi_coded[1])
    return EstimatorInput(data.reward[rows], data.propensity[rows], data.action[rows], data.pi_chosen[rows],
                          pick(data.pi), pick(data.q_hat), pick(data.accepted), pick(data.group),
                          pick(data.dm_weight), None, pick(data.influence), validate=False,
                          pi_coded=coded, dm_values=pick(data.dm_values), q_logged=pick(data.q_logged),
                          draw_key=pick(data.draw_key))


def evaluate_policies(
    logs: LogArrays,
    policies: Sequence[Policy],
    estimators: Sequence[str],
    rng: np.random.Generator,
    *,
    level: float = 0.95,
    bootstrap: int = 0,
    by: str | None = None,
    interval: str = "normal",
    folds: int = DEFAULT_FOLDS,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> Evaluation:
    """``on_progress(stage, done, total)`` is called as policies replay and estimators run."""
    unknown = [e for e in estimators if e not in ESTIMATORS]
    if unknown:
        raise ValueError(f"unknown estimator {unknown[0]!r}; known: {', '.join(ESTIMATORS)}")
    if not policies:
        raise ValueError("policies must name at least one policy")
    ests = [ESTIMATORS[e]() for e in estimators]
    codes, labels = group_codes(logs, by) if by is not None else (None, [])
    chunk = chunk_rows(bootstrap)
    fit = cross_fit(logs, rng, folds) if MODEL_BASED & set(estimators) else None
    draw_key = row_draw_keys(logs, int(rng.integers(2**63))) if needs_draws(estimators, bootstrap) else None
    model_warning = _model_warning(fit)
    results: dict[str, tuple[Estimate, ...]] = {}
    seg_results: dict[str, dict[str, tuple[Estimate, ...]]] = {}
    warnings: dict[str, tuple[str, ...]] = {}
    for policy in policies:
        def tick(done: int, stage: str = policy.name) -> None:
            if on_progress is not None:
                on_progress(stage, done, logs.n)

        # Long-running (learning) policies may accept a progress callback; others need not.
        if "on_progress" in inspect.signature(policy.evaluate).parameters:
            out = policy.evaluate(logs, rng, on_progress=tick)  # type: ignore[call-arg]
        else:
            out = policy.evaluate(logs, rng)
        data = replace(policy_input(logs, out, fit), draw_key=draw_key, validate=False)
        if "replay" in estimators:
            data = Replay().prepare(data, rng)
        results[policy.name] = _with_model_warning(tuple(
            estimate_many(ests, data, level=level, bootstrap=bootstrap, rng=rng, on_progress=tick, interval=interval,
                          chunk_size=chunk)
        ), model_warning)
        own = list(out.warnings)
        if out.accepted is not None and policy.name != "logged" and int(out.accepted.sum()) < MIN_LEARNED_ROWS:
            own.append(f"replay accepted only {int(out.accepted.sum())} of {logs.n} rows to learn from: "
                       "the policy barely left its prior (its estimates are mostly the prior's)")
        warnings[policy.name] = tuple(own)
        if codes is not None:
            for g, label in enumerate(labels):
                rows = np.flatnonzero(codes == g)
                if rows.size:
                    seg_results.setdefault(label, {})[policy.name] = tuple(
                        estimate_many(ests, take(data, rows), level=level, bootstrap=bootstrap, rng=rng,
                                      interval=interval, chunk_size=chunk)
                    )
    by_n = {label: int(np.sum(codes == g)) for g, label in enumerate(labels)} if codes is not None else {}
    return Evaluation(logs.n, results, seg_results, warnings, by, {k: v for k, v in by_n.items() if v})


def chunk_rows(bootstrap: int) -> int:
    """Rows per chunk. Bootstrap weights are (B, chunk) per chunk: keep them near BOOTSTRAP_CELLS
    values so --bootstrap 500 costs little more memory than no bootstrap."""
    return DEFAULT_CHUNK if not bootstrap else max(256, min(DEFAULT_CHUNK, BOOTSTRAP_CELLS // bootstrap))


def _model_warning(fit: CrossFit | None) -> str | None:
    if fit is None or fit.folds < 2 or fit.mse < fit.baseline_mse:
        return None
    return (f"the reward model predicts held-out rewards no better than their mean (MSE {fit.mse:.4g} vs "
            f"{fit.baseline_mse:.4g} over {fit.folds} folds): model-based estimates rest on a poor model")


def _with_model_warning(ests: tuple[Estimate, ...], warning: str | None) -> tuple[Estimate, ...]:
    if warning is None:
        return ests
    return tuple(replace(e, warnings=e.warnings + (warning,)) if e.estimator in MODEL_BASED else e for e in ests)
