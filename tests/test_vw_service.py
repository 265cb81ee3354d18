"""Policy vw end to end: service + trainer + real Redis (in-process and as a killed/restarted worker)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import redis

from bandit.vw_features import to_example
from bandit.vw_policy import VWModel
from replay.simulation import personalized as sim
from replay.simulation.online import run_online
from replay.simulation.vw import VWOnline
from service.config import PROJECT_ROOT
from service.keys import Keys
from service.models import ModelStore, event_digest
from service.trainer import Trainer
from tests.conftest import ADMIN

TITLE = "vw-sim"
FAST = dict(attribution_window_s=1, trainer_grace_s=0.2, trainer_poll_s=0.1, trainer_publish_s=3600.0)


def setup_catalog(client, profiles) -> None:
    body = {"artworks": [{"id": a, "tags": list(t)} for a, t in sim.ARTWORKS], "default": "a-comedic", "policy": "vw"}
    assert client.put(f"/catalog/{TITLE}", json=body, headers=ADMIN).status_code in (200, 201)
    for p in profiles:
        assert client.put(f"/profiles/{p.id}", json=p.features, headers=ADMIN).status_code in (200, 204)


def serve(client, profiles, traffic, start: int, n: int) -> list[tuple[int, dict]]:
    """n simulated requests from event ``start`` on; clicks reported with the true CTR."""
    out = []
    for i in range(start, start + n):
        p = profiles[traffic.profile[i]]
        d = client.get("/artwork", query_string={"profile": p.id, "title": TITLE, **traffic.requests[i]}).get_json()
        assert d["fallback"] is False and d["policy"] == "vw"
        arm = sim.artwork_ids().index(d["artwork"])
        if traffic.u[i] < sim.CTR[p.group, arm]:
            assert client.post("/reward", json={"event_id": d["event_id"]}).status_code == 200
        out.append((p.group, d))
    return out


def preferred_share(served) -> np.ndarray:
    """Per group, the share of requests served the group's preferred artwork."""
    best = sim.CTR.argmax(axis=1)
    hits = np.zeros(2)
    counts = np.zeros(2)
    for g, d in served:
        counts[g] += 1
        hits[g] += sim.artwork_ids().index(d["artwork"]) == best[g]
    return hits / np.maximum(counts, 1)


def logged_vw_decisions(client: redis.Redis, prefix: str) -> list[dict]:
    entries = client.xrange(Keys(prefix).log(TITLE))
    records = [json.loads(f[b"record"]) for _i, f in entries if f[b"type"] == b"decision"]
    return [r for r in records if r["policy"] == "vw"]


def drain(trainer: Trainer, window_s: float) -> None:
    """Let every logged decision's window close, then learn until nothing is left to read."""
    time.sleep(window_s)
    while any(r.read or r.buffered for r in trainer.step()):
        time.sleep(0.05)


@pytest.fixture
def sim_world():
    rng = np.random.default_rng(11)
    profiles = sim.make_profiles(rng, 200)
    return profiles, sim.make_traffic(rng, len(profiles), 6_000)


def test_trainer_learns_and_served_artworks_move_to_each_groups_favourite(make_app, redis_url, key_prefix, sim_world):
    profiles, traffic = sim_world
    app = make_app(trainer_publish_every=200, **FAST)
    client = app.test_client()
    setup_catalog(client, profiles)
    settings = app.config["SETTINGS"]
    rclient = redis.Redis.from_url(redis_url)
    models = ModelStore(rclient, Keys(key_prefix))
    trainer = Trainer(settings, rclient, [TITLE])
    engine = app.extensions["engine"]

    rounds, size = 12, 250
    shares, versions, late = [], [], []
    for r in range(rounds):
        served = serve(client, profiles, traffic, r * size, size)
        shares.append(preferred_share(served))
        late += served if r >= rounds - 4 else []
        drain(trainer, 1.3)
        if r == rounds - 1:
            trainer.close(publish=True)
        versions.append(models.version(TITLE))
        engine.models.observe({TITLE: versions[-1]}, wait=True)  # the worker swaps in the new model
    print(f"\npreferred-artwork share per round (comedy, action): {[s.round(2).tolist() for s in shares]}; "
          f"versions {versions}")
    assert versions[0] >= 1 and versions == sorted(versions) and versions[-1] > versions[0]
    assert (shares[0] < 0.4).all()  # no model yet: uniform over 5 artworks
    # Learning in published batches is noisier than event by event: judge the last 1,000 requests.
    assert (preferred_share(late) > 0.6).all() and (preferred_share(late) > shares[0] + 0.3).all()

    # Every VW decision logged is in the model exactly once.
    published = models.load(TITLE)
    logged = logged_vw_decisions(rclient, key_prefix)
    assert published.learned == len(logged) == rounds * size
    assert published.digest == event_digest(r["event_id"] for r in logged)
    trainer.close()


def test_propensities_are_the_published_models_pmf(make_app, redis_url, key_prefix, sim_world):
    profiles, traffic = sim_world
    client = make_app(**FAST).test_client()
    setup_catalog(client, profiles)
    before = serve(client, profiles, traffic, 0, 20)
    assert all(d["propensity"] == pytest.approx(1 / 5) for _g, d in before)  # no model: uniform

    model = VWModel.new()
    run_online(VWOnline(sim.artwork_ids(), sim.artwork_tags(), model=model), sim.impressions(profiles, traffic), np.random.default_rng(0))  # an offline-trained model
    rclient = redis.Redis.from_url(redis_url)
    models = ModelStore(rclient, Keys(key_prefix))
    version = models.publish(TITLE, model.to_bytes(), position="0-0", learned=0, digest=0, expected_version=None)
    client.application.extensions["engine"].models.observe({TITLE: version}, wait=True)
    gauge = f'artwork_model_version{{title="{TITLE}"}} {float(version)}'
    assert gauge in client.get("/metrics").get_data(as_text=True)
    served = serve(client, profiles, traffic, 20, 200)
    assert (preferred_share(served) > 0.6).all()

    by_event = {r["event_id"]: r for r in logged_vw_decisions(rclient, key_prefix)}
    fresh = VWModel.from_bytes(models.load(TITLE).data)
    for _g, d in served:
        rec = by_event[d["event_id"]]
        assert rec["context"]["vw.model"] == version and rec["propensity"] == d["propensity"]
        pmf = fresh.pmf(to_example(rec["context"], rec["candidates"]).lines())
        assert pmf.sum() == pytest.approx(1.0, abs=1e-12)
        assert d["propensity"] == pytest.approx(pmf[rec["candidates"].index(d["artwork"])], abs=1e-9)
    fresh.close()
    model.close()


def _start_trainer(redis_url: str, key_prefix: str, log_path) -> subprocess.Popen:
    env = {
        **os.environ, "REDIS_URL": redis_url, "KEY_PREFIX": key_prefix, "ATTRIBUTION_WINDOW_S": "1",
        "TRAINER_GRACE_S": "0.2", "TRAINER_POLL_S": "0.1", "TRAINER_PUBLISH_EVERY": "100",
        "TRAINER_PUBLISH_S": "1", "LOAD_CATALOG": "0", "LOG_LEVEL": "INFO",
    }
    out = open(log_path, "ab")  # noqa: SIM115 - kept open for the child's lifetime
    return subprocess.Popen([sys.executable, "-m", "service.trainer", "--title", TITLE], cwd=PROJECT_ROOT, env=env,
                            stdout=out, stderr=subprocess.STDOUT)


def _wait_for(condition, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.1)


def test_killed_trainer_restarts_without_learning_twice_or_skipping(make_app, redis_url, key_prefix, sim_world,
                                                                    tmp_path):
    profiles, traffic = sim_world
    client = make_app(**FAST).test_client()
    setup_catalog(client, profiles)
    rclient = redis.Redis.from_url(redis_url)
    models = ModelStore(rclient, Keys(key_prefix))
    log_path = tmp_path / "trainer.log"

    first = _start_trainer(redis_url, key_prefix, log_path)
    served = 0
    try:
        while models.version(TITLE) < 3 and served < 5_000:  # traffic flows while it trains
            serve(client, profiles, traffic, served, 100)
            served += 100
        first.send_signal(signal.SIGKILL)  # no goodbye: whatever it learned since its last publish is lost
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    at_kill = models.load(TITLE)
    assert at_kill is not None and at_kill.version >= 3

    serve(client, profiles, traffic, served, 300)  # traffic while no trainer runs
    served += 300
    second = _start_trainer(redis_url, key_prefix, log_path)
    try:
        serve(client, profiles, traffic, served, 300)
        served += 300
        _wait_for(lambda: models.load(TITLE).learned >= served, 60)
        second.send_signal(signal.SIGTERM)
        second.wait(20)
    finally:
        if second.poll() is None:
            second.kill()

    final = models.load(TITLE)
    logged = logged_vw_decisions(rclient, key_prefix)
    print(f"\nkilled at version {at_kill.version} with {at_kill.learned} learned; "
          f"final version {final.version}: learned {final.learned} of {len(logged)} logged")
    assert 0 < at_kill.learned < len(logged) == served
    assert final.learned == len(logged)
    assert final.digest == event_digest(r["event_id"] for r in logged)
    assert "resumes version=" in log_path.read_text()
