"""Service benchmark: /artwork under gunicorn against a real Redis, vs baselines in the same run.

Starts a private redis-server (or uses REDIS_URL), gunicorn with 2 sync workers, and drives it
with wrk (Debian's) from a second process; then measures p99 latency at half of the measured
single-title throughput (wrk with a calibrated pause between requests). Prints a table and the ratios the issue targets:
  single-title /artwork throughput >= 60% of the one-round-trip baseline;
  p99 at half that load < 20 ms;  a 40-title batch costs <= 4x a single title.
A sticky title (catalog ``sticky_s``) is measured too and its cost stated against a plain one.
``--against REF`` (a git commit, e.g. the one before issue 14's features: ``2d4c996^1``) checks
REF out into a temporary git worktree (removed at exit) and serves it from the same Redis, in the
same rounds as this version, and states this version's throughput relative to it (issue 14: no
regression above 5% for non-sticky titles); ``--before DIR`` does the same with a source tree.
Bounded: every phase has a fixed duration; servers are stopped at exit. Loopback only.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(port: int, path: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            conn.request("GET", path)
            if conn.getresponse().status < 500:
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"server on port {port} did not answer {path}")


class Processes:
    def __init__(self):
        self.procs: list[subprocess.Popen] = []

    def start(self, args, env=None) -> subprocess.Popen:
        p = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        self.procs.append(p)
        return p

    def stop_all(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)


def wrk(port: int, path_lua: str, seconds: int, connections: int) -> dict:
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", path_lua, f"http://127.0.0.1:{port}"],
        capture_output=True, text=True, timeout=seconds + 30,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    def pct(p):
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out)
        value, unit = float(m.group(1)), m.group(2)
        return value * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"rps": rps, "p50_ms": pct(50), "p99_ms": pct(99), "non_2xx": int(non2xx.group(1)) if non2xx else 0}


def wrk_script(tmp: Path, name: str, path_template: str) -> str:
    # Rotate over 1,000 profiles so requests look like real traffic.
    script = tmp / f"{name}.lua"
    script.write_text(
        'local i = 0\nrequest = function()\n  i = i + 1\n'
        f'  local path = string.gsub("{path_template}", "PROFILE", "p" .. (i % 1000))\n'
        '  return wrk.format("GET", path)\nend\n'
    )
    return str(script)


def paced_p99(tmp: Path, port: int, path: str, rate: float, seconds: int, connections: int = 4) -> dict:
    """p50/p99 at a target request rate: wrk with a per-request pause (Lua ``delay``).

    Each of ``connections`` connections sends, waits for the answer, then pauses; the pause is
    calibrated in two short runs so that the achieved rate is close to ``rate``. wrk's
    latencies exclude the pause, so they are the service's answer times at that load.
    """
    delay_ms = 1000.0 * connections / rate
    for _ in range(3):
        script = tmp / "paced.lua"
        script.write_text(
            Path(wrk_script(tmp, "paced_base", path)).read_text() + f"function delay()\n  return {delay_ms:.3f}\nend\n"
        )
        probe = wrk(port, str(script), 3, connections)
        # rate = connections / (latency + delay): solve for the delay that gives the target.
        per_request_ms = 1000.0 * connections / probe["rps"]
        latency_ms = max(per_request_ms - delay_ms, 0.0)
        delay_ms = max(1000.0 * connections / rate - latency_ms, 0.0)
    result = wrk(port, str(script), seconds, connections)
    return {"rate": result["rps"], "target_rate": rate, "p50_ms": result["p50_ms"], "p99_ms": result["p99_ms"], "errors": result["non_2xx"]}


STICKY_TITLE = "bench-sticky"


def bench_catalog(path: Path, n_titles: int = 40, n_artworks: int = 4, sticky: bool = True) -> list[str]:
    titles = [f"bench-title-{i:02d}" for i in range(n_titles)]
    body = {
        "titles": [
            {"id": t, "artworks": [{"id": f"{t}-a{j}", "tags": ["tag"]} for j in range(n_artworks)], "default": f"{t}-a0", "policy": "thompson"}
            for t in titles
        ]
    }
    if sticky:  # wrk's profiles repeat, so most of its decisions are repeats of a remembered one
        body["titles"].append({"id": STICKY_TITLE, "artworks": [{"id": f"s-a{j}"} for j in range(n_artworks)], "sticky_s": 3600})
    path.write_text(json.dumps(body))
    return titles


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5, help="duration of each wrk phase")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over all endpoints (medians reported)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    versus = parser.add_mutually_exclusive_group()
    versus.add_argument("--before", type=Path, help="source tree of the previous version: also served, for the no-regression ratio")
    versus.add_argument("--against", metavar="REF", help="git commit of the previous version, checked out in a temporary worktree and served likewise")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("bench_service needs wrk: apt-get install wrk", file=sys.stderr)
        return 2
    if args.before is not None and not (args.before / "service" / "app.py").is_file():
        print(f"--before: {args.before} is not a source tree of this project (no service/app.py)", file=sys.stderr)
        return 2
    against_commit = None
    if args.against is not None:
        against_commit = git("rev-parse", "--verify", "--quiet", f"{args.against}^{{commit}}")
        if against_commit is None:
            print(f"--against: {args.against} is not a commit of {ROOT}", file=sys.stderr)
            return 2

    procs = Processes()
    tmp = Path(tempfile.mkdtemp(prefix="bench-service-"))
    worktree = None
    try:
        if against_commit is not None:
            worktree = tmp / "against"
            if git("worktree", "add", "--detach", str(worktree), against_commit) is None:
                print(f"--against: could not check out {args.against} into {worktree}", file=sys.stderr)
                return 2
            args.before = worktree
            print(f"  --against {args.against}: {against_commit[:12]} checked out in {worktree}", file=sys.stderr)
        redis_url = os.environ.get("REDIS_URL")
        if not redis_url:
            rport = free_port()
            procs.start(["redis-server", "--port", str(rport), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(tmp)])
            redis_url = f"redis://127.0.0.1:{rport}/0"
            time.sleep(0.5)
        catalog = tmp / "catalog.json"
        titles = bench_catalog(catalog)
        env = {**os.environ, "REDIS_URL": redis_url, "CATALOG_PATH": str(catalog), "KEY_PREFIX": f"bench{os.getpid()}"}
        gunicorn = [str(VENV_BIN / "gunicorn"), "-c", str(ROOT / "gunicorn.conf.py"), "--workers", str(args.workers)]

        port_app, port_base = free_port(), free_port()
        procs.start([*gunicorn, "--bind", f"127.0.0.1:{port_app}", "service.app:create_app()"], env={**env, "PYTHONPATH": str(ROOT)})
        procs.start([*gunicorn, "--bind", f"127.0.0.1:{port_base}", "bench.baseline_app:create_baseline_app()"], env={**env, "PYTHONPATH": str(ROOT)})
        port_before = free_port() if args.before else None
        versus = f"--against {args.against}" if args.against else "--before"
        if args.before:
            before_catalog = tmp / "catalog-before.json"
            bench_catalog(before_catalog, sticky=False)
            before = [str(VENV_BIN / "gunicorn"), "-c", str(args.before / "gunicorn.conf.py"), "--workers", str(args.workers), "--chdir", str(args.before)]
            before_env = {**env, "PYTHONPATH": str(args.before), "CATALOG_PATH": str(before_catalog), "KEY_PREFIX": f"before{os.getpid()}"}
            procs.start([*before, "--bind", f"127.0.0.1:{port_before}", "service.app:create_app()"], env=before_env)
        single = f"/artwork?profile=PROFILE&title={titles[0]}"
        sticky = f"/artwork?profile=PROFILE&title={STICKY_TITLE}"
        batch = "/artwork?profile=PROFILE&" + "&".join(f"title={t}" for t in titles)
        wait_http(port_app, single.replace("PROFILE", "warm"))
        wait_http(port_base, "/hello")

        plan = [
            ("hello-world (baseline)", port_base, "/hello"),
            ("one Redis round trip (baseline)", port_base, "/one-round-trip"),
            ("/artwork, 1 title", port_app, single),
            ("/artwork, 40 titles", port_app, batch),
            ("/artwork, 1 sticky title", port_app, sticky),
        ]
        if port_before is not None:
            wait_http(port_before, single.replace("PROFILE", "warm"))
            plan.append((f"/artwork, 1 title ({versus})", port_before, single))
            plan.append((f"/artwork, 40 titles ({versus})", port_before, batch))
        for _name, port, path in plan:  # warm caches, connections and the catalog
            wrk(port, wrk_script(tmp, "warm", path), 2, args.connections)
        # Rounds interleave the endpoints, so a burst of other load on this shared machine hits
        # baseline and service alike; ratios are taken within a round, then the median.
        runs: dict[str, list[dict]] = {name: [] for name, _, _ in plan}
        for r in range(args.rounds):
            for name, port, path in plan:
                runs[name].append(wrk(port, wrk_script(tmp, "run", path), args.seconds, args.connections))
            print(f"  round {r + 1}/{args.rounds}: " + ", ".join(f"{n.removesuffix(' (baseline)')} {runs[n][-1]['rps']:.0f}/s" for n in runs), file=sys.stderr)

        def median(values):
            return statistics.median(values)

        rows = {name: {k: median([x[k] for x in rs]) for k in rs[0]} for name, rs in runs.items()}
        single_ratio = median([a["rps"] / b["rps"] for a, b in zip(runs["/artwork, 1 title"], runs["one Redis round trip (baseline)"], strict=True)])
        batch_cost = median([a["rps"] / b["rps"] for a, b in zip(runs["/artwork, 1 title"], runs["/artwork, 40 titles"], strict=True)])
        sticky_cost = median([a["rps"] / b["rps"] for a, b in zip(runs["/artwork, 1 title"], runs["/artwork, 1 sticky title"], strict=True)])
        before_ratio = before_batch = None
        if port_before is not None:
            before_ratio = median([a["rps"] / b["rps"] for a, b in zip(runs["/artwork, 1 title"], runs[f"/artwork, 1 title ({versus})"], strict=True)])
            before_batch = median([a["rps"] / b["rps"] for a, b in zip(runs["/artwork, 40 titles"], runs[f"/artwork, 40 titles ({versus})"], strict=True)])
        one = rows["/artwork, 1 title"]["rps"]
        half = paced_p99(tmp, port_app, single, rate=one / 2, seconds=2 * args.seconds)

        print(f"\nService benchmark ({args.workers} gunicorn sync workers, wrk -c{args.connections}, {args.rounds} rounds x {args.seconds}s per endpoint, medians, {os.cpu_count()} cores)")
        print(f"{'endpoint':<44}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'non-2xx':>9}")
        for name, r in rows.items():
            print(f"{name:<44}{r['rps']:>10.0f}{r['p50_ms']:>10.2f}{r['p99_ms']:>10.2f}{r['non_2xx']:>9}")
        print(f"{'/artwork, 1 title, half load':<44}{half['rate']:>10.0f}{half['p50_ms']:>10.2f}{half['p99_ms']:>10.2f}{half['errors']:>9}")
        ratios = {
            "single_vs_baseline": single_ratio,
            "batch40_cost_vs_single": batch_cost,
            "p99_ms_at_half_load": half["p99_ms"],
            "sticky_cost_vs_single": sticky_cost,
            "single_vs_before": before_ratio,
            "batch40_vs_before": before_batch,
        }
        print("\nTargets (met: with the 10% margin)")
        checks = [
            ("/artwork 1 title throughput / one-round-trip baseline", ratios["single_vs_baseline"], ">=", 0.70, 0.77),
            ("40-title batch cost / single-title cost", ratios["batch40_cost_vs_single"], "<=", 4.0, 3.6),
            (f"p99 ms at half the single-title load ({half['rate']:.0f} req/s)", ratios["p99_ms_at_half_load"], "<", 20.0, 18.0),
        ]
        if before_ratio is not None:
            # margin: 10% of the 5% regression allowed
            checks.append((f"/artwork 1 title throughput / {versus}'s", before_ratio, ">=", 0.95, 0.955))
            checks.append((f"/artwork 40 titles throughput / {versus}'s", before_batch, ">=", 0.95, 0.955))
        for label, value, op, target, with_margin in checks:
            met = value >= with_margin if op == ">=" else value <= with_margin if op == "<=" else value < with_margin
            print(f"  {label:<58} = {value:6.2f}  (target {op} {target:g}, with margin {op} {with_margin:g}: {'met' if met else 'NOT met'})")
        print(f"  a sticky title costs {sticky_cost:.2f}x a plain one (two Redis round trips: it reads the remembered decision with the profile)")
        if args.json:
            args.json.write_text(json.dumps({"rows": rows, "open_loop": half, "ratios": ratios}, indent=2))
        return 0
    finally:
        procs.stop_all()
        if worktree is not None:
            git("worktree", "remove", "--force", str(worktree))
        shutil.rmtree(tmp, ignore_errors=True)


def git(*args: str) -> str | None:
    """``git -C ROOT args``' output, or None when it fails."""
    done = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=60)
    return done.stdout.strip() if done.returncode == 0 else None


if __name__ == "__main__":
    sys.exit(main())
