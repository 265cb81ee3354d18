"""Personalizer-compatible rank benchmark: ``POST /personalizer/rank`` vs native ``/artwork``.

Same setup as ``bench_service`` (private redis-server, gunicorn with 2 sync workers, wrk from a
second process, endpoints interleaved in rounds, medians): rank requests carry 10 actions (2
features each) and 5 context features (64 different contexts in rotation), ranked by a trained
model with Personalizer's default arguments (imported through ``PUT model``), so every rank
pays featurization, a VW prediction and its one Redis round trip. Prints the targets:
  rank throughput >= 0.5x native single-title /artwork (in the same run);
  rank p99 at half its measured throughput < 20 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

from bench.bench_service import ROOT, VENV_BIN, Processes, bench_catalog, free_port, wait_http, wrk, wrk_script

KEY = "bench-key"
RANK_PATH = "/personalizer/rank?api-version=2022-09-01-preview"


def rank_bodies(n: int = 64, seed: int = 7) -> list[str]:
    rng = np.random.default_rng(seed)
    actions = [{"id": f"article-{i}", "features": [{"topic": f"t{i % 4}", "length": int(100 + 50 * i)}]} for i in range(10)]
    bodies = []
    for _ in range(n):
        context = [{"user": {"tier": str(rng.choice(["free", "gold", "plus"])), "tenure": float(rng.integers(1, 500))}},
                   {"device": {"os": str(rng.choice(["ios", "android", "web"])), "mobile": bool(rng.random() < 0.5)}},
                   {"hour": int(rng.integers(0, 24))}]
        bodies.append(json.dumps({"contextFeatures": context, "actions": actions}))
    return bodies


def rank_script(tmp: Path, bodies: list[str], delay_ms: float | None = None) -> str:
    script = tmp / ("rank_paced.lua" if delay_ms is not None else "rank.lua")
    items = ",\n".join(f"[==[{b}]==]" for b in bodies)
    text = (
        f"local bodies = {{\n{items}\n}}\nlocal i = 0\n"
        f'local headers = {{["Content-Type"] = "application/json", ["Ocp-Apim-Subscription-Key"] = "{KEY}"}}\n'
        "request = function()\n  i = i + 1\n"
        f'  return wrk.format("POST", "{RANK_PATH}", headers, bodies[(i % #bodies) + 1])\nend\n'
    )
    if delay_ms is not None:
        text += f"function delay()\n  return {delay_ms:.3f}\nend\n"
    script.write_text(text)
    return str(script)


def trained_model(bodies: list[str], n: int = 2_000) -> bytes:
    """A model with Personalizer's default arguments, trained on random labelled ranks."""
    from service.personalizer.configuration import DEFAULT_ARGUMENTS
    from service.personalizer.features import Action, action_line, shared_line
    from service.personalizer.ranker import new_model

    rng = np.random.default_rng(1)
    model = new_model(DEFAULT_ARGUMENTS)
    for i in range(n):
        body = json.loads(bodies[i % len(bodies)])
        lines = [action_line(Action(a["id"], tuple(a["features"]))) for a in body["actions"]]
        k = int(rng.integers(len(lines)))
        lines[k] = f"0:{-float(rng.random() < 0.3)}:{1 / len(lines)} {lines[k]}"
        model.learn([shared_line(body["contextFeatures"]), *lines])
    data = model.to_bytes()
    model.close()
    return data


def paced_rank_p99(tmp: Path, port: int, bodies: list[str], rate: float, seconds: int, connections: int = 4) -> dict:
    """As ``bench_service.paced_p99``: wrk with a per-request pause calibrated to ``rate``."""
    delay_ms = 1000.0 * connections / rate
    for _ in range(3):
        probe = wrk(port, rank_script(tmp, bodies, delay_ms), 3, connections)
        latency_ms = max(1000.0 * connections / probe["rps"] - delay_ms, 0.0)
        delay_ms = max(1000.0 * connections / rate - latency_ms, 0.0)
    result = wrk(port, rank_script(tmp, bodies, delay_ms), seconds, connections)
    return {"rate": result["rps"], "p50_ms": result["p50_ms"], "p99_ms": result["p99_ms"], "errors": result["non_2xx"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=5, help="duration of each wrk phase")
    parser.add_argument("--rounds", type=int, default=3, help="rounds over both endpoints (medians reported)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        print("bench_personalizer needs wrk: apt-get install wrk", file=sys.stderr)
        return 2
    procs = Processes()
    tmp = Path(tempfile.mkdtemp(prefix="bench-personalizer-"))
    try:
        rport = free_port()
        procs.start(["redis-server", "--port", str(rport), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(tmp)])
        time.sleep(0.5)
        catalog = tmp / "catalog.json"
        titles = bench_catalog(catalog)
        env = {**os.environ, "REDIS_URL": f"redis://127.0.0.1:{rport}/0", "CATALOG_PATH": str(catalog),
               "KEY_PREFIX": f"bench{os.getpid()}", "PERSONALIZER_API_KEY": KEY, "PYTHONPATH": str(ROOT)}
        port = free_port()
        procs.start([str(VENV_BIN / "gunicorn"), "-c", str(ROOT / "gunicorn.conf.py"), "--workers", str(args.workers),
                     "--bind", f"127.0.0.1:{port}", "service.app:create_app()"], env=env)
        native = f"/artwork?profile=PROFILE&title={titles[0]}"
        wait_http(port, native.replace("PROFILE", "warm"))
        bodies = rank_bodies()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/personalizer/model?api-version=2022-09-01-preview",
                                         data=trained_model(bodies), method="PUT",
                                         headers={"Ocp-Apim-Subscription-Key": KEY, "Content-Type": "application/octet-stream"})
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 204
        time.sleep(1.0)  # every worker picks the model up (PERSONALIZER_REFRESH_S)

        plan = [("/artwork, 1 title (native)", lambda: wrk_script(tmp, "native", native)),
                ("POST rank, 10 actions", lambda: rank_script(tmp, bodies))]
        for _name, script in plan:
            wrk(port, script(), 2, args.connections)
        runs: dict[str, list[dict]] = {name: [] for name, _ in plan}
        for r in range(args.rounds):
            for name, script in plan:
                runs[name].append(wrk(port, script(), args.seconds, args.connections))
            print(f"  round {r + 1}/{args.rounds}: " + ", ".join(f"{n} {runs[n][-1]['rps']:.0f}/s" for n in runs), file=sys.stderr)
        rows = {name: {k: statistics.median([x[k] for x in rs]) for k in rs[0]} for name, rs in runs.items()}
        ratio = statistics.median([a["rps"] / b["rps"] for a, b in zip(runs["POST rank, 10 actions"],
                                                                         runs["/artwork, 1 title (native)"], strict=True)])
        half = paced_rank_p99(tmp, port, bodies, rate=rows["POST rank, 10 actions"]["rps"] / 2, seconds=2 * args.seconds)

        print(f"\nPersonalizer rank benchmark ({args.workers} gunicorn sync workers, wrk -c{args.connections}, "
              f"{args.rounds} rounds x {args.seconds}s per endpoint, medians, {os.cpu_count()} cores)")
        print(f"{'endpoint':<34}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'non-2xx':>9}")
        for name, r in rows.items():
            print(f"{name:<34}{r['rps']:>10.0f}{r['p50_ms']:>10.2f}{r['p99_ms']:>10.2f}{r['non_2xx']:>9}")
        print(f"{'POST rank, half load':<34}{half['rate']:>10.0f}{half['p50_ms']:>10.2f}{half['p99_ms']:>10.2f}{half['errors']:>9}")
        print("\nTargets (met only with a 10% margin)")
        ok_ratio, ok_p99 = ratio >= 0.5 * 1.1, half["p99_ms"] < 20 / 1.1
        print(f"  rank throughput / native 1-title /artwork = {ratio:.2f}  (target >= 0.50; with margin >= 0.55: {'met' if ok_ratio else 'NOT met'})")
        print(f"  rank p99 at half load ({half['rate']:.0f} req/s) = {half['p99_ms']:.1f} ms  (target < 20 ms; with margin < 18.2 ms: {'met' if ok_p99 else 'NOT met'})")
        if args.json:
            args.json.write_text(json.dumps({"rows": rows, "half_load": half, "ratio": ratio}, indent=2))
        return 0
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
