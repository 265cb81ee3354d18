"""High availability: WAIT for replicas before a reward is acknowledged (single primary and
Cluster), and following a Sentinel failover (service, ops tools and replay export)."""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import redis

from replay.cli import main as replay_main
from service.config import ConfigError, load_settings
from service.keys import Keys
from service.redis_conn import connect
from tests.conftest import REDIS_CLI, REDIS_SERVER, RedisClusterServers, free_port

TITLE = "stranger-lights"
# A replica syncs at once (not after 5 s) and has acknowledged within 1 s (not 10 s) of it.
FAST_SYNC = ("--repl-diskless-sync-delay", "0", "--repl-ping-replica-period", "1")
# WAIT for 1 replica, with room for a loaded test machine where the answer should be a 200.
PATIENT = {"redis_timeout_s": 1.0, "redis_wait_replicas": 1, "redis_wait_timeout_s": 0.5}
needs_redis = pytest.mark.skipif(REDIS_SERVER is None, reason="starts its own redis-server processes")


def wait_until(check, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = check()
            if value:
                return value
        except (redis.RedisError, OSError):
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def replica_online(primary_port: int) -> bool:
    """The primary's replica is in sync and has acknowledged (until then, WAIT counts it out)."""
    info = redis.Redis(port=primary_port, socket_timeout=1).info("replication")
    replica = info.get("slave0", {})
    return info["role"] == "master" and replica.get("state") == "online" and replica.get("offset", 0) > 0


@pytest.fixture
def primary_and_replica(redis_server_factory):
    primary = redis_server_factory(*FAST_SYNC)
    replica = redis_server_factory(*FAST_SYNC, "--replicaof", "127.0.0.1", str(primary.port))
    wait_until(lambda: replica_online(primary.port), what="the replica to sync")
    return primary, replica


def decide(client, i: int = 0) -> dict:
    d = client.get(f"/artwork?profile=p{i}&title={TITLE}").get_json()
    assert d["fallback"] is False, d
    return d


def node_client(port: int, cluster_replica: bool = False) -> redis.Redis:
    client = redis.Redis(port=port, single_connection_client=True)
    if cluster_replica:
        client.execute_command("READONLY")  # a cluster replica answers reads only after this
    return client


def arm_rewards(port: int, prefix: str, artwork: str, cluster_replica: bool = False) -> int:
    return int(node_client(port, cluster_replica).hget(Keys(prefix).arms(TITLE), f"r|{artwork}") or 0)


def reward_entries(port: int, prefix: str, event_id: str) -> int:
    log = redis.Redis(port=port).xrange(Keys(prefix).log(TITLE))
    return sum(1 for _id, f in log if f[b"type"] == b"reward" and f[b"event_id"].decode() == event_id)


# -- configuration ---------------------------------------------------------------------------


def test_sentinel_and_wait_settings_are_parsed_and_checked():
    s = load_settings({"REDIS_SENTINELS": "127.0.0.1:26379, [::1]:26380", "REDIS_SENTINEL_MASTER": "prod",
                       "REDIS_WAIT_REPLICAS": "2", "REDIS_WAIT_TIMEOUT_MS": "50"})
    assert s.redis_sentinels == (("127.0.0.1", 26379), ("::1", 26380))
    assert (s.redis_sentinel_master, s.redis_wait_replicas, s.redis_wait_timeout_s) == ("prod", 2, 0.05)
    assert load_settings({}).redis_wait_replicas == 0 and load_settings({}).redis_sentinels == ()
    for env, name in [({"REDIS_SENTINELS": "127.0.0.1"}, "REDIS_SENTINELS"), ({"REDIS_SENTINELS": "h:99999"}, "REDIS_SENTINELS"),
                      ({"REDIS_SENTINELS": "h:²"}, "REDIS_SENTINELS"), ({"REDIS_WAIT_REPLICAS": "-1"}, "REDIS_WAIT_REPLICAS"),
                      ({"REDIS_WAIT_REPLICAS": "1", "REDIS_WAIT_TIMEOUT_MS": "250"}, "REDIS_WAIT_TIMEOUT_MS"),
                      ({"REDIS_WAIT_REPLICAS": "1", "REDIS_WAIT_TIMEOUT_MS": "0"}, "REDIS_WAIT_TIMEOUT_MS"),
                      ({"REDIS_SENTINELS": "h:1", "REDIS_CLUSTER": "1"}, "REDIS_SENTINELS"),
                      ({"REDIS_WAIT_REPLICAS": "1", "REDIS_EMBEDDED": "1"}, "REDIS_WAIT_REPLICAS")]:
        with pytest.raises(ConfigError, match=name):
            load_settings(env)


# -- WAIT on a primary with one replica --------------------------------------------------------


@needs_redis
def test_a_reward_is_acknowledged_once_the_replica_has_it(make_app, primary_and_replica, key_prefix):
    primary, replica = primary_and_replica
    client = make_app(primary.url, **PATIENT).test_client()
    d = decide(client)
    r = client.post("/reward", json={"event_id": d["event_id"], "reward": 1})
    assert (r.status_code, r.get_json()) == (200, {"status": "recorded"})
    # Read on the replica right after the acknowledgement: WAIT means it is already there.
    assert arm_rewards(replica.port, key_prefix, d["artwork"]) == 1
    assert reward_entries(replica.port, key_prefix, d["event_id"]) == 1


@needs_redis
def test_a_reward_the_replica_did_not_confirm_is_a_503_and_its_retries_count_once(make_app, primary_and_replica, key_prefix):
    primary, replica = primary_and_replica
    client = make_app(primary.url, redis_wait_replicas=1, redis_wait_timeout_s=0.1).test_client()
    d = decide(client)
    pending = Keys(key_prefix).pending(TITLE, d["event_id"].rsplit("~", 1)[1])
    wait_until(lambda: redis.Redis(port=replica.port).exists(pending), what="the decision on the replica")
    body = {"event_id": d["event_id"], "reward": 0.5}
    os.kill(replica.proc.pid, signal.SIGSTOP)  # the replica stops acknowledging
    try:
        r = client.post("/reward", json=body)
        assert r.status_code == 503 and r.headers["Retry-After"] == "1"
        assert r.get_json()["error"]["code"] == "not_replicated"
        assert arm_rewards(primary.port, key_prefix, d["artwork"]) == 1  # applied on the primary, once
        # A retry through another worker, whose fresh connection has written nothing yet, must
        # still wait for the replica to have the first attempt's write: 503 again, not a success.
        other = make_app(primary.url, **PATIENT).test_client()
        again = other.post("/reward", json=body)
        assert again.status_code == 503 and again.get_json()["error"]["code"] == "not_replicated"
    finally:
        os.kill(replica.proc.pid, signal.SIGCONT)
    r = other.post("/reward", json=body)
    assert (r.status_code, r.get_json()) == (200, {"status": "duplicate"})
    for port in (primary.port, replica.port):
        assert arm_rewards(port, key_prefix, d["artwork"]) == 1
        assert reward_entries(port, key_prefix, d["event_id"]) == 1


@needs_redis
def test_without_wait_a_reward_does_not_wait_for_a_stopped_replica(make_app, primary_and_replica, key_prefix):
    primary, replica = primary_and_replica
    client = make_app(primary.url).test_client()  # REDIS_WAIT_REPLICAS=0, the default
    d = decide(client)
    os.kill(replica.proc.pid, signal.SIGSTOP)
    try:
        r = client.post("/reward", json={"event_id": d["event_id"], "reward": 1})
    finally:
        os.kill(replica.proc.pid, signal.SIGCONT)
    assert (r.status_code, r.get_json()) == (200, {"status": "recorded"})


# -- WAIT on a Redis Cluster with one replica per master ----------------------------------------


@pytest.fixture(scope="module")
def cluster_with_replicas():
    if REDIS_SERVER is None or REDIS_CLI is None:
        pytest.skip("redis-server and redis-cli are needed for a cluster")
    cluster = RedisClusterServers(masters=3, replicas=1).start()
    masters = [n for n in cluster.nodes if redis.Redis(port=n.port).info("replication")["role"] == "master"]
    wait_until(lambda: all(replica_online(m.port) for m in masters), what="every master's replica to sync")
    wait_until(lambda: all(len(e) >= 4 for n in cluster.nodes for e in redis.Redis(port=n.port).execute_command("CLUSTER SLOTS")),
               what="every node to know every replica")
    yield cluster
    cluster.cleanup()


@needs_redis
def test_on_a_cluster_the_reward_waits_for_the_replica_of_its_titles_master(make_app, cluster_with_replicas, key_prefix):
    cluster = cluster_with_replicas
    app = make_app(cluster.url, redis_cluster=True, **PATIENT)
    client = app.test_client()
    d1, d2 = decide(client, 1), decide(client, 2)
    assert client.post("/reward", json={"event_id": d1["event_id"]}).get_json() == {"status": "recorded"}

    # The title's master and its replica, as the cluster itself says.
    node = redis.Redis(port=cluster.nodes[0].port)
    slot = node.execute_command("CLUSTER KEYSLOT", Keys(key_prefix).arms(TITLE))
    entry = next(e for e in node.execute_command("CLUSTER SLOTS") if e[0] <= slot <= e[1])
    master_port, replica_port = int(entry[2][1]), int(entry[3][1])
    assert arm_rewards(replica_port, key_prefix, d1["artwork"], cluster_replica=True) == 1  # there when acknowledged
    replica = next(n for n in cluster.nodes if n.port == replica_port)
    # Only that replica stopped: a WAIT sent anywhere but after the script on the title's master
    # would see the other masters' replicas and answer 200.
    os.kill(replica.proc.pid, signal.SIGSTOP)
    try:
        r = client.post("/reward", json={"event_id": d2["event_id"]})
        assert r.status_code == 503 and r.get_json()["error"]["code"] == "not_replicated"
    finally:
        os.kill(replica.proc.pid, signal.SIGCONT)
    r = client.post("/reward", json={"event_id": d2["event_id"]})
    assert (r.status_code, r.get_json()) == (200, {"status": "duplicate"})
    rewarded = {d1["artwork"]: 0, d2["artwork"]: 0}
    for d in (d1, d2):
        rewarded[d["artwork"]] += 1
    for port, readonly in ((master_port, False), (replica_port, True)):
        for artwork, n in rewarded.items():
            assert arm_rewards(port, key_prefix, artwork, readonly) == n


def post_until_answered(client, decision: dict, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        r = client.post("/reward", json={"event_id": decision["event_id"]})
        if r.status_code != 503 or time.monotonic() > deadline:
            assert r.status_code == 200, r.get_json()
            return r.get_json()
        time.sleep(float(r.headers["Retry-After"]) / 4)


# -- Sentinel failover ------------------------------------------------------------------------


class Sentinel:
    """One ``redis-server --sentinel`` on loopback watching ``primary_port`` (quorum 1, fast timers)."""

    def __init__(self, primary_port: int, name: str = "t"):
        self.port, self.name = free_port(), name
        self.dir = Path(tempfile.mkdtemp(prefix="sentinel-test-"))
        conf = self.dir / "sentinel.conf"
        conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {self.dir}\nsentinel monitor {name} 127.0.0.1 {primary_port} 1\n"
            f"sentinel down-after-milliseconds {name} 1000\nsentinel failover-timeout {name} 3000\n"
        )
        self.proc = subprocess.Popen([REDIS_SERVER, str(conf), "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: redis.Redis(port=self.port, socket_timeout=0.5).sentinel_master(name)["num-slaves"] >= 1,
                   what="the Sentinel to see the replica")

    def primary_port(self) -> int:
        return int(redis.Redis(port=self.port, socket_timeout=0.5).sentinel_get_master_addr_by_name(self.name)[1])

    def cleanup(self) -> None:
        self.proc.kill()
        self.proc.wait(5)


@pytest.fixture
def sentinel(primary_and_replica):
    s = Sentinel(primary_and_replica[0].port)
    yield s
    s.cleanup()


@needs_redis
def test_the_service_and_its_tools_follow_a_sentinel_failover(make_app, primary_and_replica, sentinel, key_prefix, tmp_path, capsys):
    primary, replica = primary_and_replica
    # REDIS_URL's host and port are not used with Sentinels: a port nothing listens on shows it.
    settings = {"redis_sentinels": (("127.0.0.1", sentinel.port),), "redis_sentinel_master": sentinel.name, **PATIENT}
    client = make_app(f"redis://127.0.0.1:{free_port()}/0", **settings).test_client()
    acked = decide(client, 1)
    assert client.post("/reward", json={"event_id": acked["event_id"]}).get_json() == {"status": "recorded"}
    during = decide(client, 2)
    pending = Keys(key_prefix).pending(TITLE, during["event_id"].rsplit("~", 1)[1])
    wait_until(lambda: redis.Redis(port=replica.port).exists(pending), what="the decision on the replica")

    primary.proc.kill()  # kill -9
    primary.proc.wait(5)
    fallbacks = 0
    while sentinel.primary_port() != replica.port:  # until the Sentinel has promoted the replica
        a = client.get(f"/artwork?profile=p3&title={TITLE}")
        assert a.status_code == 200
        fallbacks += a.get_json()["fallback"]
        r = client.post("/reward", json={"event_id": during["event_id"]})
        assert r.status_code == 503 and r.headers["Retry-After"] == "1", r.get_json()
        time.sleep(0.05)
    assert fallbacks > 0

    # The old primary comes back as a replica of the new one (as its supervisor restarts it).
    primary.extra_args = (*FAST_SYNC, "--replicaof", "127.0.0.1", str(replica.port))
    primary.start()
    wait_until(lambda: replica_online(replica.port), what="the old primary to replicate from the new one")
    wait_until(lambda: not client.get(f"/artwork?profile=p4&title={TITLE}").get_json()["fallback"],
               what="decisions on the new primary")  # the same worker, reconnected
    # As a client does, retry 503s (on a loaded machine the lone Sentinel may fail over again).
    # 'duplicate' if an attempt reached the new primary before it had a replica (then a 503).
    assert post_until_answered(client, during)["status"] in ("recorded", "duplicate")
    # The reward acknowledged before the crash survived it: its repeat is a duplicate.
    assert post_until_answered(client, acked) == {"status": "duplicate"}
    current = sentinel.primary_port()
    assert reward_entries(current, key_prefix, during["event_id"]) == reward_entries(current, key_prefix, acked["event_id"]) == 1

    # The trainer and the ops command line connect through connect(settings): the current primary.
    tool = connect(load_settings({}, redis_url="redis://127.0.0.1/0", **settings))
    assert tool.info("server")["tcp_port"] == current and tool.info("replication")["role"] == "master"
    out = tmp_path / "logs.jsonl"
    code = replay_main(["export", "--redis", "redis://127.0.0.1/0", "--sentinels", f"127.0.0.1:{sentinel.port}",
                        "--sentinel-master", sentinel.name, "--prefix", key_prefix, "--out", str(out), "--window", "0.001"])
    assert code == 0
    assert "(2 rewarded)" in capsys.readouterr().err


def test_a_bad_sentinels_argument_is_one_line_naming_it(tmp_path, capsys):
    code = replay_main(["export", "--redis", "redis://127.0.0.1/0", "--sentinels", "no-port", "--out", str(tmp_path / "x.jsonl")])
    err = capsys.readouterr().err.strip()
    assert code == 1 and "--sentinels" in err and len(err.splitlines()) == 1
