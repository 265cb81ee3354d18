"""VW policy benchmark: decision latency in-process, trainer throughput vs raw VW, model size and load time.

    python -m bench.bench_vw [--events 20000] [--rounds 3] [--redis redis://127.0.0.1:6379/0]

- decision: ``ModelCache.choose`` (features + predict + sampling) and ``VWModel.pmf`` alone, 5 artworks;
- trainer: ``TitleTrainer`` reading a title's stream from Redis (decision records as the service
  logs them: compact JSON of the SPEC's log schema; windows closed, with their rewards),
  decoding, featurizing, learning, publishing; events/s;
- raw VW: ``Workspace.learn`` on the same labeled examples, prebuilt as text, in a loop; events/s;
- the ratio trainer / raw (target >= 0.5), the published model's size and its load time.

Trainer and raw VW run in alternating rounds and each reports its best round: on a shared
machine, other load only ever slows a round down, so the best is each side's own speed, and
alternating keeps a burst of load from favouring one side. The trainer's model must come out
identical to raw VW's (the same examples, learned in the same order).
Keys live under a unique prefix and are deleted at the end (never FLUSHALL).
"""

from __future__ import annotations

import argparse
import json
import time
import uuid

import numpy as np
import redis
import vowpalwabbit

from bandit.vw_features import decision_context, to_example
from bandit.vw_policy import VWConfig, VWModel, cost_of, learning_probability, sample_action
from replay.simulation import personalized as sim
from service.catalog import Artwork, Profile, Title
from service.config import load_settings
from service.keys import Keys
from service.models import ModelCache, ModelStore
from service.store import RedisStore
from service.trainer import TitleTrainer

TITLE = "bench-vw"


def logged_decisions(n: int, seed: int = 0, profiles: int = 1_000) -> list[tuple[dict, float]]:
    """``n`` uniformly logged decisions of the personalized catalog: (record, reward)."""
    rng = np.random.default_rng(seed)
    profiles = sim.make_profiles(rng, profiles)
    traffic = sim.make_traffic(rng, len(profiles), n)
    out = []
    for i in range(n):
        p = profiles[traffic.profile[i]]
        arm = int(rng.integers(5))
        ctx = decision_context(p.features, traffic.requests[i], sim.segment_of(p.features), sim.artwork_tags())
        ctx["vw.model"] = 0
        record = {"event_id": f"{TITLE}~{i:032x}", "timestamp": 1.7e9 + i, "profile": p.id, "title": TITLE,
                  "artwork": sim.artwork_ids()[arm], "propensity": 0.2, "policy": "vw",
                  "candidates": list(sim.artwork_ids()), "context": ctx, "segment": ctx["segment"]}
        out.append((record, float(traffic.u[i] < sim.CTR[p.group, arm])))
    return out


def bench_decisions(model: VWModel, n: int = 5_000) -> tuple[float, float]:
    """µs per full VW decision (features, predict, sample) and per bare predict."""
    title = Title(TITLE, tuple(Artwork(a, t) for a, t in sim.ARTWORKS), "a-comedic", "vw")
    cache = ModelCache(models=None)  # type: ignore[arg-type] - no Redis: the model is put in place directly
    cache._current[TITLE] = (1, model)
    profile = Profile(tenure_days=400, weekly_hours=6.0, affinities={"comedy": 0.8, "action": 0.1})
    request = {"device": "tv", "country": "US", "hour": "20"}
    rng = np.random.default_rng(0)
    for _ in range(200):
        cache.choose(title, "regular", profile, request, rng)
    t = time.perf_counter()
    for _ in range(n):
        cache.choose(title, "regular", profile, request, rng)
    full = (time.perf_counter() - t) / n * 1e6
    lines = to_example(decision_context(profile.to_json(), request, "regular", sim.artwork_tags()),
                       sim.artwork_ids()).lines()
    t = time.perf_counter()
    for _ in range(n):
        sample_action(model.pmf(lines), rng)
    return full, (time.perf_counter() - t) / n * 1e6


def labeled_examples(decisions: list[tuple[dict, float]], config: VWConfig) -> list[list[str]]:
    """The examples the trainer learns, as VW text lines: what raw VW learns in its loop."""
    examples = []
    for rec, reward in decisions:
        candidates = rec["candidates"]
        ex = to_example(rec["context"], candidates)
        label = (candidates.index(rec["artwork"]), cost_of(reward),
                 learning_probability(rec["propensity"], config.min_learn_p))
        examples.append(ex.lines(label))
    return examples


def bench_raw_vw(examples: list[list[str]], config: VWConfig) -> tuple[float, float, bytes]:
    """Raw VW learning the labeled examples (strings built beforehand) in a loop; events/s.

    Twice: ``Workspace.learn(lines)`` (the documented API: the target's baseline) and
    ``VWModel.learn`` (the trainer's lower-level parse + learn_multi path), whose model is
    returned to check that the trainer learned exactly these examples.
    """
    workspace = vowpalwabbit.Workspace(config.arguments())
    t = time.perf_counter()
    for lines in examples:
        workspace.learn(lines)
    api = len(examples) / (time.perf_counter() - t)
    workspace.finish()
    model = VWModel.new(config)
    t = time.perf_counter()
    for lines in examples:
        model.learn(lines)
    low = len(examples) / (time.perf_counter() - t)
    data = model.to_bytes()
    model.close()
    return api, low, data


def write_log(client: redis.Redis, keys: Keys, decisions: list[tuple[dict, float]]) -> None:
    # Stream ids far in the past: every attribution window is closed, the trainer learns at full speed.
    pipe = client.pipeline(transaction=False)
    for i, (rec, reward) in enumerate(decisions):
        # Compact JSON, as ``service.store`` writes records.
        record = json.dumps(rec, separators=(",", ":"))
        pipe.xadd(keys.log(TITLE), {"type": "decision", "record": record}, id=f"{1_000 + i}-0")
        if reward:
            pipe.xadd(keys.log(TITLE), {"type": "reward", "event_id": rec["event_id"], "reward": "1.0"},
                      id=f"{1_000 + i}-1")
        if i % 2_000 == 0:
            pipe.execute()
    pipe.execute()


def bench_trainer(client: redis.Redis, prefix: str, n: int, config: VWConfig) -> tuple[float, TitleTrainer]:
    """One trainer from scratch over the whole log (written by ``write_log``), publishing at the end."""
    keys = Keys(prefix)
    client.delete(keys.model(TITLE))  # a previous round's model: this round starts from nothing
    settings = load_settings({}, key_prefix=prefix, attribution_window_s=1, trainer_grace_s=0,
                             trainer_publish_every=10_000, trainer_publish_s=3600.0)
    store = RedisStore(client, keys, attribution_window_s=1, log_maxlen=10_000_000)
    trainer = TitleTrainer(TITLE, store, ModelStore(client, keys), settings, config)
    t = time.perf_counter()
    while trainer.step().read:
        pass
    trainer.publish()
    elapsed = time.perf_counter() - t
    assert trainer.learned == n, (trainer.learned, n)
    return n / elapsed, trainer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3, help="alternating trainer / raw VW rounds; best of each")
    parser.add_argument("--profiles", type=int, default=1_000,
                        help="distinct profiles in the traffic (more: fewer repeated profile features)")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args(argv)
    config = VWConfig()
    decisions = logged_decisions(args.events, profiles=args.profiles)
    examples = labeled_examples(decisions, config)
    client = redis.Redis.from_url(args.redis, socket_timeout=30)
    prefix = "bench" + uuid.uuid4().hex[:10]
    keys = Keys(prefix)
    raws, raw_lows, rates = [], [], []
    try:
        write_log(client, keys, decisions)
        trainer = None
        for _ in range(max(args.rounds, 1)):
            raw, raw_low, raw_model = bench_raw_vw(examples, config)
            if trainer is not None:
                trainer.close()
            rate, trainer = bench_trainer(client, prefix, args.events, config)
            raws.append(raw)
            raw_lows.append(raw_low)
            rates.append(rate)
        published = ModelStore(client, keys).load(TITLE)
        # Fair comparison: the trainer learned exactly the examples raw VW did, in the same order.
        same = published.data == raw_model
        loads = []
        for _ in range(20):
            t = time.perf_counter()
            VWModel.from_bytes(published.data).close()
            loads.append(time.perf_counter() - t)
        full_us, predict_us = bench_decisions(trainer.model)
        trainer.close()
    finally:
        client.delete(keys.log(TITLE), keys.model(TITLE))
    raw, raw_low, rate = max(raws), max(raw_lows), max(rates)
    print(f"VW policy benchmark ({config.arguments()}), {args.events:,} events of {args.profiles:,} profiles, "
          f"5 artworks, best of {len(rates)} rounds")
    print(f"  decision in-process: {full_us:8.1f} µs (features + predict + sample); predict alone {predict_us:.1f} µs")
    print(f"  trainer throughput : {rate:10,.0f} events/s (Redis stream -> JSON -> features -> learn -> publish)")
    print(f"  raw VW learn loop  : {raw:10,.0f} events/s (Workspace.learn on the same prebuilt strings)")
    print(f"  raw VW, low level  : {raw_low:10,.0f} events/s (VWModel.learn: parse + learn_multi, as the trainer)")
    print(f"  ratio trainer/raw  : {rate / raw:10.2f} (target >= 0.50); vs low-level raw {rate / raw_low:.2f}; "
          f"rounds: {' '.join(f'{t / r:.2f}' for t, r in zip(rates, raws, strict=True))}")
    print(f"  same model as raw  : {'yes' if same else 'NO'} (trainer's published bytes == raw VW's)")
    print(f"  model              : {len(published.data):,} bytes; load {np.median(loads) * 1000:.1f} ms (median of 20)")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
