"""Coverage of every estimator's interval, by simulation with known truth.

    python -m bench.coverage [--reps 500] [--scenario NAME ...] [--bootstrap B]

For each scenario, ``reps`` logs are simulated, every estimator is run with every interval
method, and the table prints how often the interval held the true value of the target policy,
with the Monte-Carlo error (binomial standard error of that share), the mean width and the
mean error of the point estimate. The target is 95%; the issue's bar is >= 93% for every
estimator's default (normal) interval in every scenario, and no zero-width interval.

Scenarios (the target policy is a fixed stochastic table, or context-dependent in
``contextual``):
  uniform      4 titles x 3 artworks x 4 segments, uniform logging, n=5,000
  nosegment    the same logs without the segment column
  small        uniform logging, n=500
  thompson     on-policy Thompson sampling logging (uniform mix 1%: min propensity 0.0033), n=20,000
  contextual   one title, 3 artworks; logging, target and CTR depend on two context features, n=5,000
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from replay.estimators import ESTIMATORS, estimate_many  # noqa: E402
from replay.evaluation import policy_input  # noqa: E402
from replay.logs import LogArrays, encode_logs, validate_logs  # noqa: E402
from replay.policies import PolicyOptions, PolicyOutput, TablePolicy  # noqa: E402
from replay.reward_model import cross_fit  # noqa: E402
from replay.simulation import segmented_titles, simulate_logs  # noqa: E402

ESTIMATOR_NAMES = tuple(ESTIMATORS)
EL_ESTIMATORS = ("ips", "snips")


@dataclass(frozen=True)
class Draw:
    logs: LogArrays
    output: PolicyOutput
    truth: float


def _target_table(env) -> np.ndarray:
    k = max(env.n_arms)
    pi = np.zeros((len(env.titles), k))
    for t in range(len(env.titles)):
        pi[t, :3] = np.roll([0.6, 0.3, 0.1], t)
    return pi


def segmented_scenario(n: int, logging: str, drop_segment: bool = False) -> Callable[[np.random.Generator], Draw]:
    env = segmented_titles(np.random.default_rng(7))
    pi = _target_table(env)
    truth = env.policy_value(pi)
    policy = TablePolicy(env.table(pi))

    def draw(rng: np.random.Generator) -> Draw:
        # Thompson logging refreshed every 200 impressions, the scenario the issue measured
        options = PolicyOptions(ts_uniform_mix=0.01, ts_batch=200) if logging == "thompson" else None
        frame = simulate_logs(env, rng, n, logging, options=options)
        if drop_segment:
            frame = frame.drop(columns=["segment"])
        logs = encode_logs(validate_logs(frame))
        return Draw(logs, policy.evaluate(logs, rng), truth)

    return draw


def _ctr(x: np.ndarray) -> np.ndarray:
    """True CTR (m, 3) at context features x (m, 2): linear in x, within [0.02, 0.28]."""
    base = np.array([0.10, 0.14, 0.12])
    slope = np.array([[0.06, -0.03], [-0.05, 0.02], [0.01, 0.07]])
    return base + x @ slope.T


def _softmax(s: np.ndarray) -> np.ndarray:
    e = np.exp(s - s.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _logging_probs(x: np.ndarray) -> np.ndarray:
    return 0.1 + 0.7 * _softmax(x @ np.array([[2.0, 0.0], [-1.5, 1.0], [0.0, -2.0]]).T)


def _target_probs(x: np.ndarray) -> np.ndarray:
    return _softmax(x @ np.array([[-1.5, 1.0], [2.0, 0.5], [0.0, 1.5]]).T)


def _contextual(n: int) -> Callable[[np.random.Generator], Draw]:
    big = np.random.default_rng(11).uniform(-1, 1, size=(2_000_000, 2))
    truth = float(np.mean((_target_probs(big) * _ctr(big)).sum(axis=1)))
    arts = ["a1", "a2", "a3"]

    def draw(rng: np.random.Generator) -> Draw:
        x = rng.uniform(-1, 1, size=(n, 2))
        mu = _logging_probs(x)
        cum = mu.cumsum(axis=1)
        a = np.minimum((cum < rng.random(n)[:, None]).sum(axis=1), 2)
        r = (rng.random(n) < _ctr(x)[np.arange(n), a]).astype(float)
        frame = pd.DataFrame({
            "event_id": [f"e{i}" for i in range(n)], "timestamp": 1.7e9 + np.arange(n, dtype=float),
            "profile": [f"p{i}" for i in range(n)], "title": "t1", "artwork": np.array(arts)[a],
            "propensity": mu[np.arange(n), a], "reward": r,
            "context": [{"x1": float(u), "x2": float(v)} for u, v in x],
        })
        logs = encode_logs(validate_logs(frame))
        slots = [logs.arms[0].index(name) for name in arts]
        pi = np.zeros((n, logs.k))
        pi[:, slots] = _target_probs(logs.features)
        return Draw(logs, PolicyOutput(pi, pi[np.arange(n), logs.action]), truth)

    return draw


SCENARIOS: dict[str, Callable[[], Callable[[np.random.Generator], Draw]]] = {
    "uniform": lambda: segmented_scenario(5000, "uniform"),
    "nosegment": lambda: segmented_scenario(5000, "uniform", drop_segment=True),
    "small": lambda: segmented_scenario(500, "uniform"),
    "thompson": lambda: segmented_scenario(20_000, "thompson"),
    "contextual": lambda: _contextual(5000),
}


def one_rep(draw: Draw, rng: np.random.Generator, bootstrap: int) -> dict[tuple[str, str], tuple[float, float, float]]:
    """(estimator, interval) -> (value, lo, hi) for one simulated log."""
    fit = cross_fit(draw.logs, rng)
    data = policy_input(draw.logs, draw.output, fit)
    ests = [ESTIMATORS[name]() for name in ESTIMATOR_NAMES]
    out = {}
    methods = [("normal", {}), ("el", {})]
    if bootstrap:
        methods.append(("bootstrap", {"bootstrap": bootstrap}))
    for method, extra in methods:
        chosen = ests if method != "el" else [e for e in ests if e.name in EL_ESTIMATORS]
        for e in estimate_many(chosen, data, rng=rng, interval=method, warnings=(), **extra):
            out[(e.estimator, method)] = (e.value, *e.ci)
    return out


def run(scenario: str, reps: int, seed: int, bootstrap: int) -> list[dict]:
    draw_fn = SCENARIOS[scenario]()
    rng = np.random.default_rng(seed)
    rows: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    truth = None
    start = time.perf_counter()
    for rep in range(reps):
        d = draw_fn(rng)
        truth = d.truth
        for key, v in one_rep(d, rng, bootstrap).items():
            rows.setdefault(key, []).append(v)
        if (rep + 1) % 25 == 0 or rep + 1 == reps:
            print(f"{scenario}: {rep + 1}/{reps} repetitions, {time.perf_counter() - start:.0f}s", file=sys.stderr, flush=True)
    table = []
    for (est, method), vals in rows.items():
        v = np.array(vals)
        cover = (v[:, 1] <= truth) & (truth <= v[:, 2])
        share = float(cover.mean())
        table.append({
            "scenario": scenario, "estimator": est, "interval": method, "coverage": share,
            "mc_error": float(np.sqrt(share * (1 - share) / len(v))), "width": float(np.mean(v[:, 2] - v[:, 1])),
            "zero_width": int(np.sum(v[:, 2] <= v[:, 1])), "bias": float(np.mean(v[:, 0]) - truth),
            "below": int(np.sum(v[:, 2] < truth)), "above": int(np.sum(v[:, 1] > truth)), "reps": len(v),
        })
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=500)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--bootstrap", type=int, default=0, help="also the Poisson-bootstrap interval with B replicates")
    parser.add_argument("--scenario", action="append", choices=list(SCENARIOS))
    args = parser.parse_args(argv)
    failures = []
    print("| scenario | estimator | interval | coverage | MC error | mean width | bias | misses below/above | zero width |")
    print("|---|---|---|---|---|---|---|---|---|")
    for scenario in args.scenario or list(SCENARIOS):
        start = time.perf_counter()
        for row in run(scenario, args.reps, args.seed, args.bootstrap):
            print(f"| {row['scenario']} | {row['estimator']} | {row['interval']} | {row['coverage']:.1%} | "
                  f"{row['mc_error']:.1%} | {row['width']:.4f} | {row['bias']:+.4f} | {row['below']}/{row['above']} | "
                  f"{row['zero_width']} |", flush=True)
            if row["interval"] == "normal" and row["coverage"] < 0.93 or row["zero_width"]:
                failures.append(f"{scenario}/{row['estimator']}/{row['interval']}: {row['coverage']:.1%}")
        print(f"<!-- {scenario}: {args.reps} reps in {time.perf_counter() - start:.0f}s -->", flush=True)
    print("target: every default (normal) interval covers >= 93%, no zero-width interval: "
          + ("MET" if not failures else "NOT MET: " + "; ".join(failures)))
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
