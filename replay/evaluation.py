"""Evaluate several policies on one log with several estimators (what ``evaluate`` runs).

Order of work: fit the reward model once (if DM or DR is asked for), then per policy: its
probabilities on every row (learning policies replay the log in order), replay acceptance,
then every estimator in one chunked pass. The segment breakdown reuses the same per-row
inputs (and the same replay acceptance) restricted to each segment's rows.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from replay.estimators import DEFAULT_CHUNK, ESTIMATORS, Estimate, EstimatorInput, Replay, estimate_many
from replay.logs import LogArrays
from replay.policy_base import Policy, PolicyOutput
from replay.reward_model import fit_reward_model

BOOTSTRAP_CELLS = 2_000_000  # 16 MB of float weights per chunk (32 MB while drawn)


@dataclass(frozen=True)
class Evaluation:
    n: int
    estimates: dict[str, tuple[Estimate, ...]]  # policy name -> one per estimator, in order
    by_segment: dict[str, dict[str, tuple[Estimate, ...]]] = field(default_factory=dict)  # segment -> policy -> ...
    policy_warnings: dict[str, tuple[str, ...]] = field(default_factory=dict)


def policy_input(logs: LogArrays, out: PolicyOutput, q_hat: np.ndarray | None) -> EstimatorInput:
    return EstimatorInput(
        reward=logs.reward, propensity=logs.propensity, action=logs.action, pi_chosen=out.pi_chosen,
        pi=out.pi, q_hat=q_hat, accepted=out.accepted, group=logs.title,
    )


def take(data: EstimatorInput, rows: np.ndarray) -> EstimatorInput:
    def pick(a):
        return None if a is None else a[rows]

    return EstimatorInput(data.reward[rows], data.propensity[rows], data.action[rows], data.pi_chosen[rows],
                          pick(data.pi), pick(data.q_hat), pick(data.accepted), pick(data.group), validate=False)


def evaluate_policies(
    logs: LogArrays,
    policies: Sequence[Policy],
    estimators: Sequence[str],
    rng: np.random.Generator,
    *,
    level: float = 0.95,
    bootstrap: int = 0,
    by_segment: bool = False,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> Evaluation:
    """``on_progress(stage, done, total)`` is called as policies replay and estimators run."""
    unknown = [e for e in estimators if e not in ESTIMATORS]
    if unknown:
        raise ValueError(f"unknown estimator {unknown[0]!r}; known: {', '.join(ESTIMATORS)}")
    if not policies:
        raise ValueError("policies must name at least one policy")
    ests = [ESTIMATORS[e]() for e in estimators]
    # Bootstrap weights are (B, chunk) per chunk: keep them near BOOTSTRAP_CELLS values so
    # --bootstrap 500 costs little more memory than no bootstrap.
    chunk = DEFAULT_CHUNK if not bootstrap else max(256, min(DEFAULT_CHUNK, BOOTSTRAP_CELLS // bootstrap))
    q_hat = fit_reward_model(logs).predict(logs) if {"dm", "dr"} & set(estimators) else None
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
        data = policy_input(logs, out, q_hat)
        if "replay" in estimators:
            data = Replay().prepare(data, rng)
        results[policy.name] = tuple(
            estimate_many(ests, data, level=level, bootstrap=bootstrap, rng=rng, on_progress=tick, chunk_size=chunk)
        )
        warnings[policy.name] = out.warnings
        if by_segment and logs.has_segment:
            for g, seg in enumerate(logs.segments):
                rows = np.flatnonzero(logs.segment == g)
                if rows.size:
                    seg_results.setdefault(seg, {})[policy.name] = tuple(
                        estimate_many(ests, take(data, rows), level=level, bootstrap=bootstrap, rng=rng, chunk_size=chunk)
                    )
    return Evaluation(logs.n, results, seg_results, warnings)
