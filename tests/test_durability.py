"""With AOF on, an acknowledged reward survives a Redis restart, even a crash (kill -9).

``appendfsync always`` fsyncs the AOF before Redis replies, so whatever the service acknowledged
as ``recorded`` is on disk; after the restart the same event is still a ``duplicate`` (counted
once), and a decision served before the restart can still be rewarded.
"""

from __future__ import annotations

import pytest

from tests.conftest import RedisServer

TITLE = "stranger-lights"
AOF_ALWAYS = ("--appendonly", "yes", "--appendfsync", "always")


def crash(server: RedisServer) -> None:
    """SIGKILL: no final fsync, no shutdown save; only what was already on disk survives."""
    assert server.proc is not None
    server.proc.kill()
    server.proc.wait(5)
    server.proc = None


def clean_stop(server: RedisServer) -> None:
    server.stop()  # SIGTERM: Redis flushes the AOF and exits


@pytest.mark.parametrize("stop", [crash, clean_stop], ids=["kill-9", "sigterm"])
def test_recorded_reward_survives_a_restart(make_app, redis_server_factory, stop):
    server = redis_server_factory(*AOF_ALWAYS)
    port, data_dir = server.port, server.dir
    # stats_cache_s=0: every decision also asks for fresh counters, the path a restart once broke.
    app = make_app(redis_url_override=server.url, catalog_refresh_s=0.0, stats_cache_s=0.0)
    client = app.test_client()
    rewarded, pending = (client.get(f"/artwork?profile=p{i}&title={TITLE}").get_json() for i in (1, 2))
    assert rewarded["fallback"] is False and pending["fallback"] is False
    assert client.post("/reward", json={"event_id": rewarded["event_id"], "reward": 0.5}).get_json() == {"status": "recorded"}

    stop(server)
    assert client.post("/reward", json={"event_id": rewarded["event_id"]}).status_code == 503
    server.start()  # same port, same data directory: Redis replays the AOF
    assert (server.port, server.dir) == (port, data_dir)

    again = client.post("/reward", json={"event_id": rewarded["event_id"], "reward": 0.5})
    assert again.status_code == 200 and again.get_json() == {"status": "duplicate"}
    # The decision that was waiting for its reward survived too (with its attribution TTL).
    late = client.post("/reward", json={"event_id": pending["event_id"], "reward": 1})
    assert late.get_json() == {"status": "recorded"}
    # The restarted Redis has no scripts loaded: decisions reload them and are served, not a 500.
    after = client.get(f"/artwork?profile=p3&title={TITLE}")
    assert after.status_code == 200 and after.get_json()["fallback"] is False

    stats = client.get(f"/stats/{TITLE}").get_json()
    assert (stats["impressions"], stats["rewards"], stats["reward_sum"]) == (3, 2, 1.5)
    store = app.extensions["store"]
    rewards = [f for _, f in store.read_log(TITLE) if f["type"] == "reward"]
    assert sorted(f["event_id"] for f in rewards) == sorted([rewarded["event_id"], pending["event_id"]])
    ttl = store.client.ttl(store.keys.pending(TITLE, pending["event_id"].rsplit("~", 1)[1]))
    assert 0 < ttl <= app.config["SETTINGS"].attribution_window_s


def test_without_persistence_a_restart_forgets_rewards(make_app, redis_server_factory):
    """The contrast: the fixture's default server has no AOF and no snapshots."""
    server = redis_server_factory()
    client = make_app(redis_url_override=server.url, catalog_refresh_s=0.0).test_client()
    decision = client.get(f"/artwork?profile=p1&title={TITLE}").get_json()
    assert client.post("/reward", json={"event_id": decision["event_id"]}).get_json() == {"status": "recorded"}
    crash(server)
    server.start()
    assert client.post("/reward", json={"event_id": decision["event_id"]}).status_code == 404
