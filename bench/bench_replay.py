"""Benchmark of the `replay` command line as analysts run it: whole processes, medians.

Builds 1,000,000 synthetic logged rows (5 titles x 10 artworks, uniform logging) as Parquet and
a table policy, then times separate processes, each run ``--repeat`` times (median):

- ``replay --help`` against ``python -c "import numpy"``;
- ``replay evaluate LOGS --policy table:P --estimator ips --estimator snips --estimator dr --json``
  against a bare pandas+numpy script reading the same file and computing IPS, SNIPS and DR
  (cell-mean reward model): wall time and peak memory (the child's ru_maxrss);
- the same evaluate with ``--bootstrap 500``: peak memory against the run without.

Targets (issue 10) must hold with 10% margin: a ratio passes when it is at most 0.9 x target.

    python bench/bench_replay.py [--rows N] [--repeat R]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARGIN = 0.9

# Run in a child: a child's peak RSS (ru_maxrss) starts from its parent's at fork, so this
# process stays small (stdlib only) and the data is made elsewhere.
MAKE_DATA = '''
import sys

import numpy as np

sys.path.insert(0, sys.argv[3])
from replay.logs import write_logs
from replay.simulation import segmented_titles, simulate_logs

rows, out = int(sys.argv[1]), sys.argv[2]
rng = np.random.default_rng(0)
env = segmented_titles(rng, n_titles=5, n_artworks=10)
write_logs(simulate_logs(env, rng, rows, "uniform"), f"{out}/logs.parquet")
target = rng.dirichlet(np.ones(10), size=5)
with open(f"{out}/policy.csv", "w") as fh:
    fh.write("title,artwork,probability\\n")
    for i, (t, arts) in enumerate(zip(env.titles, env.artworks, strict=True)):
        for j, a in enumerate(arts):
            fh.write(f"{t},{a},{float(target[i, j])!r}\\n")
'''

BASELINE = '''
import sys

import numpy as np
import pandas as pd

logs, table = sys.argv[1], sys.argv[2]
df = pd.read_parquet(logs, columns=["title", "artwork", "segment", "propensity", "reward"])
pol = pd.read_csv(table)
key = pd.MultiIndex.from_frame(df[["title", "artwork"]])
pi_chosen = pol.set_index(["title", "artwork"])["probability"].reindex(key).fillna(0.0).to_numpy()
r, mu = df["reward"].to_numpy(), df["propensity"].to_numpy()
w = pi_chosen / mu
ips = np.mean(w * r)
snips = np.sum(w * r) / np.sum(w)
cell = df.groupby(["title", "segment", "artwork"], observed=True)["reward"].mean()
q_logged = cell.reindex(pd.MultiIndex.from_frame(df[["title", "segment", "artwork"]])).to_numpy()
qp = cell.reset_index().merge(pol, on=["title", "artwork"])
qp["v"] = qp["reward"] * qp["probability"]
v = qp.groupby(["title", "segment"])["v"].sum()
dm = v.reindex(pd.MultiIndex.from_frame(df[["title", "segment"]])).to_numpy()
dr = np.mean(dm + w * (r - q_logged))
print(f"ips {ips:.5f} snips {snips:.5f} dr {dr:.5f}")
'''


def run(argv: list[str], cwd: Path) -> tuple[float, float]:
    """Wall seconds and peak resident MB of one child process (which must succeed)."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {err}")
    return elapsed, usage.ru_maxrss / 1024


def median_of(argv: list[str], cwd: Path, repeat: int) -> tuple[float, float]:
    runs = [run(argv, cwd) for _ in range(repeat)]
    return statistics.median(t for t, _ in runs), statistics.median(m for _, m in runs)


def line(what: str, ours: float, base: float, unit: str, target: float) -> tuple[str, bool]:
    ratio = ours / base
    ok = ratio <= MARGIN * target
    verdict = "PASS" if ok else "FAIL"
    return (f"{what:<52} {ours:9.2f} {unit:<3} vs {base:9.2f} {unit:<3} = {ratio:5.2f}x  "
            f"(target <= {target:.1f}x, with margin <= {MARGIN * target:.2f}x)  {verdict}"), ok


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=5, help="runs per measurement (median; default 5)")
    ap.add_argument("--bootstrap-repeat", type=int, default=3, help="runs of the --bootstrap 500 evaluate (default 3)")
    args = ap.parse_args()
    python = sys.executable
    replay = Path(python).with_name("replay")
    replay_cmd = [str(replay)] if replay.exists() else [python, "-m", "replay"]
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        subprocess.run([python, "-c", MAKE_DATA, str(args.rows), str(d), str(ROOT)], check=True)
        (d / "baseline.py").write_text(BASELINE)
        evaluate = [*replay_cmd, "evaluate", "logs.parquet", "--policy", "table:policy.csv",
                    "--estimator", "ips", "--estimator", "snips", "--estimator", "dr", "--json"]
        print(f"{args.rows:,} rows, 5 titles x 10 artworks; whole processes, median of {args.repeat}")
        results = []
        t_help, _ = median_of([*replay_cmd, "--help"], d, args.repeat)
        t_numpy, _ = median_of([python, "-c", "import numpy"], d, args.repeat)
        results.append(line("replay --help (time) vs python -c 'import numpy'", t_help, t_numpy, "s", 2.0))
        t_eval, m_eval = median_of(evaluate, d, args.repeat)
        t_base, m_base = median_of([python, "baseline.py", "logs.parquet", "policy.csv"], d, args.repeat)
        results.append(line("evaluate table ips,snips,dr (time) vs pandas+numpy", t_eval, t_base, "s", 2.0))
        results.append(line("evaluate table ips,snips,dr (peak memory) vs pandas+numpy", m_eval, m_base, "MB", 1.5))
        t_boot, m_boot = median_of([*evaluate, "--bootstrap", "500"], d, args.bootstrap_repeat)
        results.append(line(f"evaluate --bootstrap 500 (peak memory; {t_boot:.0f} s) vs without", m_boot, m_eval, "MB", 1.5))
    for text, _ in results:
        print(text)
    return 0 if all(ok for _, ok in results) else 1


if __name__ == "__main__":
    sys.exit(main())
