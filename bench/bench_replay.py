"""Benchmark of the replay toolkit on 1,000,000 synthetic logged rows (10 artworks).

Prints: Parquet load time (validate + encode); IPS+SNIPS+DR with intervals for a table policy
beside the bare numpy sums on the same arrays (the floor); the same end to end (policy
probabilities + reward model + estimators); replay of thompson with learning; peak memory.
Targets (issue 3): estimators within 5x of the floor, load <= 3 s, TS replay <= 10 s, peak
memory <= 1.5 GB.

    python bench/bench_replay.py [--rows N] [--titles T]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from replay.estimators import DR, IPS, SNIPS, EstimatorInput, estimate_many  # noqa: E402
from replay.evaluation import policy_input  # noqa: E402
from replay.logs import encode_logs, load_logs, write_logs  # noqa: E402
from replay.policies import TablePolicy, ThompsonPolicy  # noqa: E402
from replay.policy_base import PolicyOptions  # noqa: E402
from replay.reward_model import fit_reward_model  # noqa: E402
from replay.simulation import segmented_titles, simulate_logs  # noqa: E402


def best_of(fn, repeat: int = 5) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--titles", type=int, default=5)
    ap.add_argument("--artworks", type=int, default=10)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    env = segmented_titles(rng, n_titles=args.titles, n_artworks=args.artworks)
    frame = simulate_logs(env, rng, args.rows, "uniform")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "logs.parquet"
        write_logs(frame, path)
        del frame
        size_mb = path.stat().st_size / 1e6
        t_load, logs = best_of(lambda: encode_logs(load_logs(path)), repeat=3)
    print(f"rows {logs.n:,}, titles {len(logs.titles)}, artworks per title {logs.k}, segments {len(logs.segments)}")
    print(f"parquet load + validate + encode ({size_mb:.0f} MB): {t_load:.2f} s   (target <= 3 s)")

    target = rng.dirichlet(np.ones(args.artworks), size=args.titles)
    policy = TablePolicy(env.table(target))
    t_prep, data = best_of(lambda: policy_input(logs, policy.evaluate(logs, rng), fit_reward_model(logs).predict(logs)), 3)
    pi, q, a, r, mu, pc = data.pi, data.q_hat, data.action, data.reward, data.propensity, data.pi_chosen

    def floor():
        w = pc / mu
        wr = w * r
        q_a = np.take_along_axis(q, a[:, None], axis=1)[:, 0]
        return np.mean(wr), np.sum(wr) / np.sum(w), np.mean(np.einsum("ij,ij->i", pi, q) + w * (r - q_a))

    t_floor, floor_vals = best_of(floor, 7)

    def ours():
        # A fresh input each time, so validation is timed too.
        d = EstimatorInput(r, mu, a, pc, pi, q, None, logs.title)
        return estimate_many([IPS(), SNIPS(), DR()], d, warnings=())

    t_est, ests = best_of(ours, 7)
    for f, e in zip(floor_vals, ests, strict=True):
        assert abs(f - e.value) < 1e-9, (f, e)
    t_diag, _ = best_of(lambda: estimate_many([IPS(), SNIPS(), DR()], EstimatorInput(r, mu, a, pc, pi, q, None, logs.title)), 3)
    print(f"floor: bare numpy sums mean(w*r), sum(w*r)/sum(w), DR mean: {t_floor * 1e3:.1f} ms")
    print(f"IPS+SNIPS+DR with 95% intervals and ESS (validated input): {t_est * 1e3:.1f} ms = "
          f"{t_est / t_floor:.2f}x floor   (target <= 5x)")
    print(f"  same plus warnings (tiny propensities, unlogged actions): {t_diag * 1e3:.1f} ms = {t_diag / t_floor:.2f}x floor")
    print(f"  policy probabilities + reward model fit/predict before that: {t_prep * 1e3:.0f} ms")
    print("  values: " + ", ".join(f"{e.estimator} {e.value:.5f} [{e.ci[0]:.5f}, {e.ci[1]:.5f}]" for e in ests)
          + f"; truth {env.policy_value(target):.5f}")

    ts = ThompsonPolicy(PolicyOptions())
    t = time.perf_counter()
    out = ts.evaluate(logs, np.random.default_rng(1))
    t_ts = time.perf_counter() - t
    acc = int(out.accepted.sum())
    print(f"replay of thompson with learning (batch {PolicyOptions().ts_batch} per title, "
          f"{acc:,} accepted rows, reward {logs.reward[out.accepted].mean():.4f}): {t_ts:.2f} s   (target <= 10 s)")
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory (ru_maxrss): {peak_mb:.0f} MB   (target <= 1536 MB)")


if __name__ == "__main__":
    main()
