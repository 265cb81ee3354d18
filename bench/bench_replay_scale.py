"""Scaling benchmark of `replay evaluate` on partitioned Parquet: pandas engine vs Dask engine.

For each size (default 1M, 10M, 50M rows) writes hive-partitioned Parquet (``date=.../``, one
partition per ``--partition-rows`` rows) into a temporary folder (deleted after), then runs
``replay evaluate DIR --policy table:P --estimator ips --estimator snips --estimator dr --json``
as a whole process per engine and samples the resident memory of that process and all its
children (the Dask LocalCluster's worker processes) every 50 ms. Reports wall time, the peak of
any single process and the peak of the process tree's sum.

Partitions are copies of one simulated partition (5 titles x 10 artworks, uniform logging) with
timestamps shifted by a day each, so generating 50M rows takes seconds; the estimates are not
the point here, the cost of computing them is.

The pandas engine is not run where it would take more than half the machine's available memory
(estimated at 0.4 GB per million rows: 0.19 GB measured at 10M, doubled for pandas' transient
copies; the machine is shared), and the table says so.

Targets (issue 15), with 10% margin: on the Dask engine the peak of any process under 1.5 GB at
the largest size (<= 1.35 GB), time growing at most linearly with rows (the fitted exponent k
such that the largest size's time, extrapolated from the smallest's as rows^k, is at most 90%
of linear: k <= 1 + ln 0.9 / ln(largest / smallest), 0.973 for 1M..50M),
and at the smallest size the Dask engine within 3x of pandas (<= 2.7x).

    python bench/bench_replay_scale.py [--sizes 1000000,10000000,50000000] [--partition-rows 500000]
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script: the bench package is found from the repo root
    sys.path.insert(0, str(ROOT))
from bench.bench_replay import MAKE_DATA  # noqa: E402  (the same simulated log, written as logs.parquet)

MARGIN = 0.9
MB_PER_MILLION_PANDAS = 400



def write_partitions(template: Path, out: Path, total: int, per: int) -> int:
    """``total`` rows as ceil(total / per) day folders, each the template (cut to size) a day later."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(template)
    ts = table.column("timestamp").to_numpy()
    parts = math.ceil(total / per)
    for d in range(parts):
        rows = min(per, total - d * per)
        t = table.slice(0, rows)
        t = t.set_column(t.column_names.index("timestamp"), "timestamp", pa.array(ts[:rows] + 86_400.0 * d))
        folder = out / f"date=day{d:04d}"
        folder.mkdir(parents=True)
        pq.write_table(t, folder / "part-0.parquet")
    return parts


def measure(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, float]:
    """Wall seconds, peak RSS of any process in the tree (MB), peak of the tree's sum (MB)."""
    import psutil

    start = time.perf_counter()
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    root = psutil.Process(proc.pid)
    peak_one = peak_sum = 0.0
    done = threading.Event()
    err: list[bytes] = []
    threading.Thread(target=lambda: (err.append(proc.stderr.read()), done.set()), daemon=True).start()
    while proc.poll() is None:
        try:
            procs = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            break
        rss = []
        for p in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                rss.append(p.memory_info().rss / 2**20)
        if rss:
            peak_one, peak_sum = max(peak_one, max(rss)), max(peak_sum, sum(rss))
        time.sleep(0.05)
    elapsed = time.perf_counter() - start
    done.wait(5)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {b''.join(err).decode()[-2000:]}")
    return elapsed, peak_one, peak_sum


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000000,10000000,50000000", help="rows, comma-separated")
    ap.add_argument("--partition-rows", type=int, default=500_000, help="rows per day folder (default 500,000)")
    args = ap.parse_args()
    import psutil

    sizes = [int(s) for s in args.sizes.split(",")]
    python = sys.executable
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    replay = [python, "-m", "replay"]
    available_mb = psutil.virtual_memory().available / 2**20
    rows_out = []
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        subprocess.run([python, "-c", MAKE_DATA, str(min(args.partition_rows, max(sizes))), str(d), str(ROOT)],
                       check=True)
        for n in sizes:
            logs = d / f"logs{n}"
            parts = write_partitions(d / "logs.parquet", logs, n, args.partition_rows)
            base = [*replay, "evaluate", str(logs), "--policy", f"table:{d / 'policy.csv'}", "--estimator", "ips",
                    "--estimator", "snips", "--estimator", "dr", "--json"]
            for engine in ("pandas", "dask"):
                if engine == "pandas" and n / 1e6 * MB_PER_MILLION_PANDAS > 0.5 * available_mb:
                    rows_out.append((n, parts, engine, None, None, None))
                    continue
                t, one, total = measure([*base, "--engine", engine], d, env)
                rows_out.append((n, parts, engine, t, one, total))
            shutil.rmtree(logs)
    print(f"{'rows':>12} {'partitions':>10} {'engine':>7} {'time s':>8} {'peak any process MB':>20} {'peak all MB':>12}")
    for n, parts, engine, t, one, total in rows_out:
        if t is None:
            print(f"{n:>12,} {parts:>10} {engine:>7}   not run: needs over half the available memory")
        else:
            print(f"{n:>12,} {parts:>10} {engine:>7} {t:>8.1f} {one:>20.0f} {total:>12.0f}")
    dask = [(n, t, one) for n, _, e, t, one, _ in rows_out if e == "dask"]
    results = []
    if len(dask) >= 2:
        xs = [math.log(n) for n, _, _ in dask]
        ys = [math.log(t) for _, t, _ in dask]
        mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
        slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum((x - mx) ** 2 for x in xs)
        # the margin is on time: rows^k over the sizes' span at most 90% of linear growth
        bound = 1 + math.log(MARGIN) / math.log(dask[-1][0] / dask[0][0])
        ok = slope <= bound
        results.append(ok)
        print(f"dask time ~ rows^{slope:.2f} (fitted over {len(dask)} sizes; target <= 1.0, with margin <= {bound:.3f})  "
              f"{'PASS' if ok else 'FAIL'}")
    n_max, _, one_max = dask[-1]
    ok = one_max <= MARGIN * 1500
    results.append(ok)
    print(f"dask peak of any process at {n_max:,} rows: {one_max:.0f} MB (target < 1500 MB, with margin <= "
          f"{MARGIN * 1500:.0f} MB)  {'PASS' if ok else 'FAIL'}")
    small = [r for r in rows_out if r[0] == sizes[0]]
    t_p = next((t for _, _, e, t, _, _ in small if e == "pandas"), None)
    t_d = next((t for _, _, e, t, _, _ in small if e == "dask"), None)
    if t_p and t_d:
        ok = t_d / t_p <= MARGIN * 3
        results.append(ok)
        print(f"dask vs pandas at {sizes[0]:,} rows: {t_d:.1f} s vs {t_p:.1f} s = {t_d / t_p:.2f}x (target <= 3x, "
              f"with margin <= {MARGIN * 3:.1f}x)  {'PASS' if ok else 'FAIL'}")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
