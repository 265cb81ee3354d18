"""Redis memory per decision, measured on a real redis-server (INFO memory and MEMORY USAGE).

Serves 20,000 decisions (20 titles, 1,000 profiles, the demo request context) through the app
in process, rewards 30% of them, and reports bytes per decision: in all (used_memory before and
after), and split into the pending decision (held for the attribution window), the log entry
(held until trimmed by DECISION_LOG_MAX_AGE_S or DECISION_LOG_MAXLEN) and the rest (counters,
traffic snapshots); then the README's formula at a few rates. Loopback only; the server is
stopped at exit.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import redis

from bench.bench_service import Processes, bench_catalog, free_port
from service.app import create_app
from service.config import Settings, load_settings

N_TITLES = 20


def used(client: redis.Redis) -> int:
    return int(client.info("memory")["used_memory"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1_000, help=f"batch requests of {N_TITLES} titles")
    args = parser.parse_args()
    procs = Processes()
    tmp = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    try:
        port = free_port()
        procs.start(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(tmp)])
        url = f"redis://127.0.0.1:{port}/0"
        client = redis.Redis.from_url(url)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        catalog = tmp / "catalog.json"
        titles = bench_catalog(catalog, n_titles=N_TITLES)
        settings = load_settings({}, redis_url=url, catalog_path=str(catalog), key_prefix="aw", log_level="WARNING")
        app = create_app(settings)
        web = app.test_client()
        query = "&".join(f"title={t}" for t in titles)
        web.get(f"/artwork?profile=warm&{query}&device=tv&country=fr&hour=20")  # counters, scripts, first stream nodes
        before = used(client)
        events = []
        for i in range(args.requests):
            body = web.get(f"/artwork?profile=p{i % 1000}&{query}&device=tv&country=fr&hour={i % 24}").get_json()
            events += [d["event_id"] for d in body["decisions"]]
        after_decisions = used(client)
        n = len(events)
        store = app.extensions["store"]
        pending = [store.keys.pending(*e.split("~")) for e in events[:: max(n // 200, 1)]]
        pending_bytes = sum(client.memory_usage(k, samples=0) for k in pending) / len(pending)
        log_bytes = sum(client.memory_usage(store.keys.log(t), samples=0) for t in titles) / (n + len(titles))
        rewarded = events[::3]
        for e in rewarded:
            web.post("/reward", json={"event_id": e})
        after_rewards = used(client)
        per_decision = (after_decisions - before) / n
        per_reward = (after_rewards - after_decisions) / len(rewarded)

        print(f"\nRedis memory ({n:,} decisions over {N_TITLES} titles, {len(rewarded):,} rewards, redis-server {client.info('server')['redis_version']})")
        print(f"{'measure':<62}{'bytes':>10}")
        print(f"{'per decision, in all (used_memory delta / decisions)':<62}{per_decision:>10.0f}")
        print(f"{'  pending decision (MEMORY USAGE; freed after the window)':<62}{pending_bytes:>10.0f}")
        print(f"{'  log entry (MEMORY USAGE of the streams / entries)':<62}{log_bytes:>10.0f}")
        print(f"{'  rest (counters, traffic snapshots, allocator)':<62}{per_decision - pending_bytes - log_bytes:>10.0f}")
        print(f"{'per reward (its signal, log entry, counters)':<62}{per_reward:>10.0f}")
        print("\nFormula: pending = rate x window x P; log = titles x min(rate per title x max age, maxlen) x L")
        for rate, window in ((100, 600), (1_000, 600), (1_000, 86_400)):
            print(f"  {rate:>5} decisions/s, window {window:>6} s: pending {rate * window * pending_bytes / 2**30:6.2f} GiB")
        age, maxlen = Settings.decision_log_max_age_s, Settings.decision_log_maxlen
        for rate in (10, 100, 1_000):
            entries = N_TITLES * min(rate / N_TITLES * age, maxlen)
            print(f"  {rate:>5} decisions/s over {N_TITLES} titles, log of {age} s / {maxlen:,} entries per title: {entries * log_bytes / 2**30:6.2f} GiB")
        return 0
    finally:
        procs.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
