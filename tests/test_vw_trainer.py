"""The trainer's fast path learns exactly the reference examples; the featurization caches never change a feature."""

from __future__ import annotations

import json

import numpy as np
import pytest
import redis

from bandit import vw_features
from bandit.vw_features import decision_context, to_example
from bandit.vw_policy import VWConfig, VWModel, cost_of, learning_probability
from replay.simulation import personalized as sim
from service.config import load_settings
from service.keys import Keys
from service.models import ModelStore, event_digest
from service.store import RedisStore
from service.trainer import TitleTrainer

TITLE = "vw-trainer"


def _records(n: int, seed: int = 5) -> list[tuple[dict, float]]:
    rng = np.random.default_rng(seed)
    profiles = sim.make_profiles(rng, 40)
    traffic = sim.make_traffic(rng, len(profiles), n)
    out = []
    for i in range(n):
        p = profiles[traffic.profile[i]]
        arm = int(rng.integers(5))
        ctx = decision_context(p.features if i % 7 else None, traffic.requests[i], sim.segment_of(p.features),
                               sim.artwork_tags())
        ctx["vw.model"] = 0
        if i == 30:
            ctx["p.aff.drama"] = float("nan")  # json.dumps writes NaN, which orjson refuses: still learned
        rec = {"event_id": f"{TITLE}~{i:032x}", "timestamp": 1.7e9 + i, "profile": p.id, "title": TITLE,
               "artwork": sim.artwork_ids()[arm], "propensity": [0.2, 0.05, 0.9][i % 3], "policy": "vw",
               "candidates": list(sim.artwork_ids()), "context": ctx, "segment": ctx["segment"]}
        out.append((rec, float(traffic.u[i] < sim.CTR[p.group, arm])))
    return out


def _logged(rec: dict) -> str:
    return json.dumps(rec, separators=(",", ":"))  # as ``service.store`` logs a decision record


def _reference_model(decisions: list[tuple[dict, float]], config: VWConfig) -> VWModel:
    """The examples learned one by one through ``ADFExample.lines(label)``: what the trainer must learn."""
    model = VWModel.new(config)
    for rec, reward in decisions:
        candidates = rec["candidates"]
        label = (candidates.index(rec["artwork"]), cost_of(reward),
                 learning_probability(rec["propensity"], config.min_learn_p))
        model.learn(to_example(rec["context"], candidates).lines(label))
    return model


@pytest.fixture
def log_world(redis_url, key_prefix):
    client = redis.Redis.from_url(redis_url)
    keys = Keys(key_prefix)
    settings = load_settings({}, key_prefix=key_prefix, attribution_window_s=1, trainer_grace_s=0,
                             trainer_publish_every=100_000, trainer_publish_s=3600.0)
    store = RedisStore(client, keys, attribution_window_s=1, log_maxlen=1_000_000)
    yield client, keys, settings, store
    client.delete(keys.log(TITLE), keys.model(TITLE))


def test_trainer_learns_the_reference_examples_and_skips_what_it_cannot_learn(log_world):
    client, keys, settings, store = log_world
    decisions = _records(400)
    bad = decisions[10][0]
    seq = 1_000
    for i, (rec, reward) in enumerate(decisions):
        client.xadd(keys.log(TITLE), {"type": "decision", "record": _logged(rec)}, id=f"{seq}-0")
        if reward:
            client.xadd(keys.log(TITLE), {"type": "reward", "event_id": rec["event_id"], "reward": "1.0"}, id=f"{seq}-1")
        if i == 50:  # none of these may stop the trainer, be learned, or be learned twice
            client.xadd(keys.log(TITLE), {"type": "decision", "record": "{not json"}, id=f"{seq}-2")
            client.xadd(keys.log(TITLE), {"type": "decision", "record": _logged(rec)}, id=f"{seq}-3")  # a copy
            client.xadd(keys.log(TITLE), {"type": "decision", "record": _logged(
                {**bad, "event_id": "x~1", "artwork": "not-a-candidate"})}, id=f"{seq}-4")
            client.xadd(keys.log(TITLE), {"type": "decision", "record": _logged(
                {**bad, "event_id": "x~2", "policy": "thompson"})}, id=f"{seq}-5")
        seq += 1
    config = VWConfig()
    trainer = TitleTrainer(TITLE, store, ModelStore(client, keys), settings, config, batch=97)
    while trainer.step().read:
        pass
    trainer.publish()
    published = ModelStore(client, keys).load(TITLE)
    assert published.learned == len(decisions) and not trainer.waiting and not trainer.rewards
    assert published.digest == event_digest(rec["event_id"] for rec, _r in decisions)
    assert published.position == trainer.cursor
    reference = _reference_model(decisions, config)
    assert published.data == reference.to_bytes()  # the same examples (labels, features), in the same order
    reference.close()
    trainer.close()


def test_a_restarted_trainer_goes_on_from_the_published_position(log_world):
    client, keys, settings, store = log_world
    decisions = _records(300, seed=8)
    for i, (rec, reward) in enumerate(decisions):
        client.xadd(keys.log(TITLE), {"type": "decision", "record": _logged(rec)}, id=f"{1_000 + i}-0")
        if reward:
            client.xadd(keys.log(TITLE), {"type": "reward", "event_id": rec["event_id"], "reward": "1.0"},
                        id=f"{1_000 + i}-1")
    models = ModelStore(client, keys)
    first = TitleTrainer(TITLE, store, models, settings, VWConfig(), batch=60)
    first.step()
    first.step()
    first.publish()
    first.step()  # learned but never published: lost with the process
    first.close()
    second = TitleTrainer(TITLE, store, models, settings, VWConfig(), batch=60)
    while second.step().read:
        pass
    second.publish()
    final = models.load(TITLE)
    assert final.learned == len(decisions)
    assert final.digest == event_digest(rec["event_id"] for rec, _r in decisions)
    second.close()


def test_cached_action_lines_follow_the_tags():
    ctx = decision_context(None, {}, "new", {"a1": ["comedic"], "a2": ["dark"]})
    first = to_example(ctx, ["a1", "a2"]).actions
    ctx["vw.tags"]["a1"].append("bright")  # the very lists that were cached change
    changed = to_example(ctx, ["a1", "a2"]).actions
    assert first[0] == "|A art=a1 tag=comedic" and changed[0] == "|A art=a1 tag=comedic tag=bright"
    retagged = to_example(decision_context(None, {}, "new", {"a1": ["action"], "a2": []}), ["a1", "a2"])
    assert retagged.actions == ("|A art=a1 tag=action", "|A art=a2")


def test_cached_namespaces_keep_equal_values_of_different_types_apart():
    shared = [to_example({"vw.v": 1, "hour": h}, ["a"]).shared for h in (1, 1.0, True, "1")]
    assert [s.split("|C ")[1] for s in shared] == ["daypart=night hour=1", "hour=1.0", "hour=True",
                                                   "daypart=night hour=1"]


def test_cached_examples_equal_freshly_built_ones():
    contexts = [rec["context"] for rec, _r in _records(200, seed=2)]
    cached = [to_example(c, sim.artwork_ids()) for c in contexts]
    for cache in (vw_features._PROFILE_NS, vw_features._CONTEXT_NS, vw_features._ACTIONS):
        cache.clear()
    assert [to_example(c, sim.artwork_ids()) for c in contexts] == cached
    unhashable = {**contexts[0], "extra": ["a", "list"]}  # not cacheable: built every time
    assert to_example(unhashable, sim.artwork_ids()) == to_example(unhashable, sim.artwork_ids())


def test_a_model_is_published_only_when_it_learned_something(log_world):
    client, keys, settings, store = log_world
    models = ModelStore(client, keys)
    trainer = TitleTrainer(TITLE, store, models, settings, VWConfig(), batch=60)
    trainer.step()
    assert trainer.publish() is None and models.load(TITLE) is None  # empty log: nothing to publish
    for i, (rec, _reward) in enumerate(_records(20, seed=3)):
        client.xadd(keys.log(TITLE), {"type": "decision", "record": _logged(rec)}, id=f"{1_000 + i}-0")
    while trainer.step().read:
        pass
    assert trainer.publish() == 1 and models.load(TITLE).learned == 20
    client.xadd(keys.log(TITLE), {"type": "reward", "event_id": "other~1", "reward": "1.0"}, id="5000-0")
    trainer.step()  # read an entry, learned nothing
    assert trainer.publish() is None and models.load(TITLE).version == 1
    trainer.close()


def test_the_trainer_logs_json_lines_like_the_service(redis_url, key_prefix):
    import os
    import subprocess
    import sys

    env = {**os.environ, "REDIS_URL": redis_url, "KEY_PREFIX": key_prefix, "LOG_LEVEL": "INFO"}
    env.pop("LOG_FORMAT", None)
    proc = subprocess.run([sys.executable, "-m", "service.trainer", "--once", "--title", TITLE], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stderr.strip().splitlines()
    assert lines
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert any(r["logger"] == "service.trainer" and "starts a new model" in r["message"] for r in records)
    assert all({"time", "level", "logger", "message", "pid"} <= set(r) for r in records)


def test_the_trainer_learns_the_aggregated_reward(log_world):
    """Under ``sum``/``max`` a decision has one reward record per change of its aggregate (the
    record's ``reward``): the trainer learns the last, largest one (a click 0.3 upgraded to 1)."""
    client, keys, settings, store = log_world
    decisions = _records(120, seed=9)
    learned = []
    for i, (rec, reward) in enumerate(decisions):
        client.xadd(keys.log(TITLE), {"type": "decision", "record": _logged(rec)}, id=f"{1000 + i}-0")
        final = 0.0
        if reward:  # a click, and every other one upgraded by a play
            client.xadd(keys.log(TITLE), {"type": "reward", "event_id": rec["event_id"], "reward": "0.3",
                                          "value": "0.3", "aggregation": "max"}, id=f"{1000 + i}-1")
            final = 0.3
            if i % 2:
                client.xadd(keys.log(TITLE), {"type": "reward", "event_id": rec["event_id"], "reward": "1.0",
                                              "value": "1.0", "aggregation": "max"}, id=f"{1000 + i}-2")
                final = 1.0
        learned.append((rec, final))
    assert {r for _, r in learned} == {0.0, 0.3, 1.0}
    config = VWConfig()
    trainer = TitleTrainer(TITLE, store, ModelStore(client, keys), settings, config, batch=50)
    while trainer.step().read:
        pass
    trainer.publish()
    reference = _reference_model(learned, config)
    assert ModelStore(client, keys).load(TITLE).data == reference.to_bytes()
    reference.close()
    trainer.close()
