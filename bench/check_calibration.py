"""Calibration and power of ``replay check`` by simulation.

    python -m bench.check_calibration [--reps 200] [--alpha 0.01]

False alarms: the share of honest logs flagged (the target is at most alpha, within its
Monte-Carlo error), for each kind of honest log below. Power: the share of broken logs flagged
(target >= 0.95 for served 0.5/0.3/0.2 logged as 1/3 at N=150).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bandit.ab_assignment import ABSplit, assign  # noqa: E402
from replay.integrity import check_propensities  # noqa: E402
from replay.logs import encode_logs, validate_logs  # noqa: E402
from replay.policies import PolicyOptions  # noqa: E402
from replay.simulation import segmented_titles, simulate_logs, two_artworks  # noqa: E402

ENV = segmented_titles(np.random.default_rng(7))  # 4 titles x 3 artworks x 4 segments
THREE = ("a1", "a2", "a3")


def _three_arm_frame(rng: np.random.Generator, n: int, served: tuple[float, ...], logged: tuple[float, ...]) -> pd.DataFrame:
    a = rng.choice(3, size=n, p=served)
    return pd.DataFrame({
        "event_id": [f"e{i}" for i in range(n)], "timestamp": 1.7e9 + np.arange(n, dtype=float),
        "profile": [f"p{i}" for i in range(n)], "title": "t1", "artwork": np.array(THREE)[a],
        "propensity": np.array(logged)[a], "reward": 0.0, "candidates": [list(THREE)] * n,
    })


def _ab_frame(rng: np.random.Generator, profiles: int, impressions: int) -> pd.DataFrame:
    """The service's ``ab`` split over ``profiles`` profiles with repeat visits, two titles."""
    rows = []
    for title, arts in (("t1", THREE), ("t2", ("b1", "b2"))):
        split = ABSplit.equal(arts, salt=title)
        prof = rng.integers(profiles, size=impressions)
        for i, p in enumerate(prof.tolist()):
            a = assign(split, f"u{p}")
            rows.append({"event_id": f"{title}-{i}", "timestamp": 1.7e9 + i, "profile": f"u{p}", "title": title,
                         "artwork": a.arm, "propensity": a.propensity, "reward": 0.0, "policy": "ab",
                         "candidates": list(arts)})
    return pd.DataFrame(rows)


def _honest_thompson(rng: np.random.Generator, n: int) -> pd.DataFrame:
    return simulate_logs(ENV, rng, n, "thompson", options=PolicyOptions(ts_batch=50))


KINDS: dict[str, Callable[[np.random.Generator], pd.DataFrame]] = {
    "uniform 4x3x4, N=120": lambda rng: simulate_logs(ENV, rng, 120, "uniform"),
    "uniform 4x3x4, N=5000": lambda rng: simulate_logs(ENV, rng, 5000, "uniform"),
    "table 0.5/0.3/0.2, N=30": lambda rng: _three_arm_frame(rng, 30, (0.5, 0.3, 0.2), (0.5, 0.3, 0.2)),
    "thompson 4x3x4, N=600": lambda rng: _honest_thompson(rng, 600),
    "thompson 4x3x4, N=5000": lambda rng: _honest_thompson(rng, 5000),
    "thompson 2 artworks, N=2000": lambda rng: simulate_logs(two_artworks(), rng, 2000, "thompson"),
    "ab 2 titles, 60 profiles, 400 impressions": lambda rng: _ab_frame(rng, 60, 400),
}
BROKEN: dict[str, Callable[[np.random.Generator], pd.DataFrame]] = {
    "served 0.5/0.3/0.2 logged 1/3, N=150": lambda rng: _three_arm_frame(rng, 150, (0.5, 0.3, 0.2), (1 / 3,) * 3),
}


def flag_rate(make: Callable[[np.random.Generator], pd.DataFrame], reps: int, alpha: float, seed: int) -> float:
    rng = np.random.default_rng(seed)
    flagged = 0
    start = time.perf_counter()
    for rep in range(reps):
        report = check_propensities(encode_logs(validate_logs(make(rng))), alpha=alpha, rng=rng)
        flagged += report.flagged
        if (rep + 1) % 50 == 0:
            print(f"  {rep + 1}/{reps} logs, {time.perf_counter() - start:.0f}s", file=sys.stderr, flush=True)
    return flagged / reps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--alpha", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args(argv)
    ok = True
    # One-sided binomial allowance: alpha plus two Monte-Carlo standard errors.
    allowance = args.alpha + 2 * np.sqrt(args.alpha * (1 - args.alpha) / args.reps)
    print(f"| honest logs ({args.reps} each) | flagged at alpha={args.alpha:g} | MC error | target <= {allowance:.3f} |")
    print("|---|---|---|---|")
    for name, make in KINDS.items():
        rate = flag_rate(make, args.reps, args.alpha, args.seed)
        good = rate <= allowance
        ok &= good
        print(f"| {name} | {rate:.1%} | {np.sqrt(max(rate, args.alpha) * (1 - rate) / args.reps):.1%} | "
              f"{'met' if good else 'NOT MET'} |", flush=True)
    print()
    print(f"| broken logs ({args.reps} each) | flagged (power) | target >= 0.95 |")
    print("|---|---|---|")
    for name, make in BROKEN.items():
        rate = flag_rate(make, args.reps, args.alpha, args.seed)
        good = rate >= 0.95
        ok &= good
        print(f"| {name} | {rate:.1%} | {'met' if good else 'NOT MET'} |", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
