"""Simulated logs: a logging policy serves a ``CatalogEnvironment``'s traffic; the log records it.

``simulate_logs(env, rng, n, logging)`` plays ``uniform``, ``table`` (a fixed policy) or
``thompson`` (``replay.simulation.thompson``, refreshed every ``options.ts_batch`` impressions
of a title) through ``run_online`` and writes what was served, with the exact propensities, in
the SPEC schema.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from replay.policy_base import PolicyOptions
from replay.simulation import SimulationError
from replay.simulation.environments import CatalogEnvironment, Impressions
from replay.simulation.online import FixedPolicy, OnlineRun, run_online
from replay.simulation.thompson import ThompsonOnline


def simulate_logs(env: CatalogEnvironment, rng: np.random.Generator, n: int, logging: str = "uniform",
                  table: dict[str, dict[str, float]] | None = None, options: PolicyOptions | None = None) -> pd.DataFrame:
    """``n`` logged impressions from ``logging`` in {"uniform", "thompson", "table"} (then pass ``table``)."""
    if n < 1:
        raise SimulationError(f"n must be >= 1, got {n}")
    if logging == "uniform":
        policy = FixedPolicy.uniform(env.n_arms)
    elif logging == "thompson":
        options = options or PolicyOptions()
        policy = ThompsonOnline(env.n_arms, len(env.segments), options.thompson(), options.ts_batch, use_segments=True)
    elif logging == "table":
        if table is None:
            raise SimulationError("logging='table' needs table={title: {artwork: probability}}")
        policy = FixedPolicy(table_array(env, table), "table")
    else:
        raise SimulationError(f"logging must be uniform, thompson or table, got {logging!r}")
    traffic = env.impressions(rng, n)
    return to_logs(env, traffic, run_online(policy, traffic, rng), policy=logging)


def to_logs(env: CatalogEnvironment, traffic: Impressions, run: OnlineRun, policy: str, start_time: float = 1.7e9,
            interval_s: float = 0.01, event_prefix: str = "e") -> pd.DataFrame:
    """A run on ``env``'s impressions as a log table in the SPEC schema (with candidates and segment)."""
    n = run.action.size
    titles = np.array(env.titles, dtype=object)[traffic.title]
    arts = np.array([np.array(a + ("",) * (max(env.n_arms) - len(a)), dtype=object) for a in env.artworks])
    candidates = np.empty(len(env.titles), dtype=object)
    candidates[:] = [list(a) for a in env.artworks]
    return pd.DataFrame({
        "event_id": [f"{event_prefix}{i}" for i in range(n)],
        "timestamp": start_time + interval_s * np.arange(n),
        "profile": [f"p{p}" for p in traffic.profile],
        "title": titles,
        "artwork": arts[traffic.title, run.action],
        "propensity": run.propensity,
        "reward": run.reward,
        "policy": policy,
        "candidates": candidates[traffic.title],
        "segment": np.array(env.segments, dtype=object)[traffic.segment],
    })


def table_array(env: CatalogEnvironment, table: dict[str, dict[str, float]]) -> np.ndarray:
    """``{title: {artwork: p}}`` as a (T, K) array over the environment's artworks."""
    k = max(env.n_arms)
    out = np.zeros((len(env.titles), k))
    for t, (title, arts) in enumerate(zip(env.titles, env.artworks, strict=True)):
        if title not in table:
            raise SimulationError(f"table has no probabilities for title {title!r}")
        unknown = set(table[title]) - set(arts)
        if unknown:
            raise SimulationError(f"table lists artworks {sorted(unknown)} that title {title!r} does not have")
        out[t, : len(arts)] = [table[title].get(a, 0.0) for a in arts]
        if abs(out[t].sum() - 1) > 1e-6:
            raise SimulationError(f"table probabilities of title {title!r} sum to {out[t].sum():.6g}, not 1")
    return out
