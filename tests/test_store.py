"""Store properties on a real Redis: round trips, exactly-once rewards under concurrency."""

from __future__ import annotations

import json
import multiprocessing as mp
import time
from concurrent.futures import ProcessPoolExecutor

import pytest

from service.app import create_app
from service.config import load_settings
from tests.conftest import CLUSTER

TITLE = "stranger-lights"


class CountingClient:
    """Wraps a redis client; counts network round trips (commands and pipeline executions)."""

    def __init__(self, client):
        self._client = client
        self.round_trips = 0

    def __getattr__(self, name):
        attr = getattr(self._client, name)
        if not callable(attr):
            return attr

        def command(*args, **kwargs):  # any client method (get, hget, ...) is one round trip
            self.round_trips += 1
            return attr(*args, **kwargs)

        return command

    def execute_command(self, *args, **kwargs):
        self.round_trips += 1
        return self._client.execute_command(*args, **kwargs)

    def pipeline(self, *args, **kwargs):
        pipe = self._client.pipeline(*args, **kwargs)
        original = pipe.execute
        counter = self

        def execute(*a, **k):
            counter.round_trips += 1
            return original(*a, **k)

        def immediate(*a, **k):  # e.g. SCRIPT EXISTS sent by a pipeline before its commands
            counter.round_trips += 1
            return type(pipe).immediate_execute_command(pipe, *a, **k)

        pipe.execute = execute
        pipe.immediate_execute_command = immediate
        return pipe


@pytest.mark.parametrize("warm", [False, True], ids=["cold", "warm"])
@pytest.mark.parametrize("n_titles", [1, 40])
def test_round_trips_of_a_decision_do_not_grow_with_the_batch(app, n_titles, warm):
    """Two round trips when the worker has no copy of a title's counters (or on a cluster),
    one when it has: the decide script then reads the profile's segment itself."""
    engine = app.extensions["engine"]
    titles = sorted(t for t, title in engine.catalog.get().items() if title.policy != "vw")
    batch = (titles * 3)[:n_titles]
    if not CLUSTER:  # (a cluster client flushes one node only; NOSCRIPT recovery is tested without)
        engine.store.client.script_flush()  # the first decision must load the script by itself
    engine.decide("warmup", batch, {})
    if not warm:
        engine.counts.clear()
    counting = CountingClient(engine.store.client)
    engine.store.client = counting
    engine.catalog.clock = lambda: 0.0  # keep the catalog check out of this count
    decisions = engine.decide("p1", batch, {"device": "tv"})
    assert [d.title for d in decisions] == batch and not any(d.fallback for d in decisions)
    assert counting.round_trips == (1 if warm and not CLUSTER else 2)


def test_record_template_keeps_percent_signs_and_quotes(app, client):
    engine = app.extensions["engine"]
    engine.decide("warmup", [TITLE], {})
    d = client.get("/artwork", query_string={"profile": "p7", "title": TITLE, "device": '50%s "tv" %d\\'}).get_json()
    store = engine.store
    record = json.loads(store.client.xrevrange(store.keys.log(TITLE), count=1)[0][1][b"record"])
    assert record["context"] == {"device": '50%s "tv" %d\\', "segment": "new"}
    assert (record["artwork"], record["propensity"]) == (d["artwork"], d["propensity"])


def test_one_trip_decisions_follow_the_profiles_segment(app, client):
    from tests.conftest import ADMIN

    engine = app.extensions["engine"]
    engine.decide("warmup", [TITLE], {})  # the worker now has the title's counters
    assert client.put("/profiles/fan", json={"segment": "power"}, headers=ADMIN).status_code == 200
    store = engine.store
    for _ in range(5):
        d = client.get(f"/artwork?profile=fan&title={TITLE}&device=tv").get_json()
        title, token = d["event_id"].rsplit("~", 1)
        pending = store.pending(title, token)
        assert pending.segment == "power" and pending.artwork == d["artwork"]
        assert pending.propensity == d["propensity"]
    record = json.loads(store.client.xrevrange(store.keys.log(TITLE), count=1)[0][1][b"record"])
    assert record["segment"] == "power" and record["context"] == {"device": "tv", "segment": "power"}
    assert (record["artwork"], record["propensity"], record["event_id"]) == (d["artwork"], d["propensity"], d["event_id"])


def _post_rewards(args):
    redis_url, prefix, mine, theirs = args
    app = create_app(load_settings({}, redis_url=redis_url, key_prefix=prefix, load_catalog=False, redis_cluster=CLUSTER))
    client = app.test_client()
    statuses = {"recorded": 0, "duplicate": 0}
    # Each process posts its own events and then another process's, so first posts and
    # duplicates of the same event race between processes.
    for event_id in [*mine, *theirs]:
        r = client.post("/reward", json={"event_id": event_id, "reward": 1})
        statuses[r.get_json()["status"]] += 1
    return statuses


@pytest.mark.slow
def test_rewards_are_counted_exactly_once_across_processes(app, redis_url, key_prefix):
    client = app.test_client()
    events = []
    for _ in range(200):  # 200 batches of 50 decisions = 10,000 decisions
        body = client.get("/artwork", query_string=[("profile", "p1")] + [("title", TITLE)] * 50).get_json()
        events += [d["event_id"] for d in body["decisions"]]
    assert len(set(events)) == 10_000
    chunks = [events[i::4] for i in range(4)]
    jobs = [(redis_url, key_prefix, chunks[i], chunks[(i + 1) % 4]) for i in range(4)]
    with ProcessPoolExecutor(4, mp_context=mp.get_context("fork")) as pool:
        results = list(pool.map(_post_rewards, jobs))
    assert sum(r["recorded"] for r in results) == 10_000
    assert sum(r["duplicate"] for r in results) == 10_000
    stats = client.get(f"/stats/{TITLE}").get_json()
    assert stats["impressions"] == 10_000
    assert stats["rewards"] == 10_000
    assert stats["reward_sum"] == 10_000
    # The log holds each reward once.
    store = app.extensions["store"]
    entries = store.client.xrange(store.keys.log(TITLE), count=100_000)
    reward_entries = [f for _, f in entries if f[b"type"] == b"reward"]
    assert len(reward_entries) == 10_000
    assert len({f[b"event_id"] for f in reward_entries}) == 10_000


@pytest.mark.parametrize(
    "context",
    [{}, {"device": "tv"}, {"device": '50%s "x" \\ %d', "hour": "3"}, {"p.tenure": 3.5, "vw.tags": [["a", "b"]], "segment": "low"}],
)
def test_record_template_filled_in_equals_the_json_record(context):
    from service.store import DecisionRecord

    rec = DecisionRecord("t~" + "0" * 32, "0" * 32, 1764000000.123456, "p1", "t", "thompson", ("a", "b"), context, (("a", 0.5),) * 4)
    filled = rec.template() % ("a", repr(0.5), "low", "low")  # what the script's string.format does
    expected = {
        "event_id": rec.event_id, "timestamp": rec.timestamp, "profile": "p1", "title": "t", "artwork": "a",
        "propensity": 0.5, "policy": "thompson", "candidates": ["a", "b"], "context": {**context, "segment": "low"}, "segment": "low",
    }
    assert filled == json.dumps(expected, separators=(",", ":"))


@pytest.mark.parametrize("segment", ["new", "low", "regular", "power"])
def test_decide_script_keeps_the_draw_of_the_profiles_segment(app, segment):
    from service.catalog import Profile
    from service.ids import new_event_id
    from service.store import DecisionRecord

    store = app.extensions["store"]
    if CLUSTER:
        pytest.skip("on a cluster the segment is read before the script")
    store.put_profile("seg-user", Profile(segment=segment))
    event_id = new_event_id(TITLE)
    draws = (("a-new", 0.1), ("a-low", 0.2), ("a-regular", 0.3), ("a-power", 0.4))
    rec = DecisionRecord(event_id, event_id.rsplit("~", 1)[1], 1.0, "seg-user", TITLE, "thompson", ("x",), {}, draws)
    decided, _ = store.record_decisions([rec], None)
    assert decided == segment
    pending = store.pending(TITLE, rec.token)
    assert pending.artwork == f"a-{segment}" and pending.segment == segment
    assert pending.propensity == dict(draws)[f"a-{segment}"] == rec.draw_for(segment)[1]


def test_a_catalog_change_between_counter_refreshes_never_breaks_a_decision(make_app):
    from tests.conftest import ADMIN

    writer = make_app().test_client()
    reader_app = make_app(catalog_refresh_s=0.0, stats_cache_s=3600.0)  # counters kept, catalog followed
    reader = reader_app.test_client()
    body = {"artworks": [{"id": a} for a in ("x1", "x2", "x3")], "policy": "thompson"}
    assert writer.put("/catalog/changing", json=body, headers=ADMIN).status_code == 201
    for _ in range(3):
        assert reader.get("/artwork?profile=p&title=changing").status_code == 200
    body["artworks"] = [{"id": "y1"}]  # fewer artworks, other ids
    assert writer.put("/catalog/changing", json=body, headers=ADMIN).status_code == 200
    for _ in range(3):
        d = reader.get("/artwork?profile=p&title=changing").get_json()
        assert (d["artwork"], d["propensity"]) == ("y1", 1.0)


def _old_entries(redis_client, key: str, n: int, at_ms: int) -> None:
    pipe = redis_client.pipeline(transaction=False)
    for i in range(n):
        pipe.xadd(key, {"type": "decision", "record": "{}"}, id=f"{at_ms}-{i}")
    pipe.execute()


def test_decision_logs_are_trimmed_by_age_when_a_worker_starts_and_every_minute(make_app, redis_client, key_prefix):
    from service.decisions import LOG_TRIM_S
    from service.keys import Keys

    key = Keys(key_prefix).log(TITLE)
    old_ms = int((time.time() - 2 * 86_400) * 1000)
    _old_entries(redis_client, key, 1_000, old_ms)
    app = make_app()  # default DECISION_LOG_MAX_AGE_S: 1 day; the first catalog check trims
    assert app.config["SETTINGS"].decision_log_max_age_s == 86_400 and LOG_TRIM_S == 60
    # Approximate trimming drops whole stream nodes (100 entries): at most one node's worth stays.
    assert redis_client.xlen(key) < 100
    client = app.test_client()
    client.get(f"/artwork?profile=p1&title={TITLE}")
    entries = redis_client.xrange(key)
    assert int(entries[-1][0].split(b"-")[0]) > old_ms  # the new decision is kept


def test_trim_logs_keeps_entries_younger_than_the_limit(app, redis_client):
    store = app.extensions["store"]
    key = store.keys.log(TITLE)
    now_ms = int(time.time() * 1000)
    _old_entries(redis_client, key, 500, now_ms - 3_600_000)
    _old_entries(redis_client, key, 300, now_ms - 60_000)
    store.trim_logs(time.time() - 600)
    ids = [int(i.split(b"-")[0]) for i, _ in redis_client.xrange(key)]
    assert ids.count(now_ms - 60_000) == 300 and ids.count(now_ms - 3_600_000) < 100


@pytest.mark.parametrize(
    "command",
    [
        ("EVALSHA", "f" * 40, 2, "k1", "k2", 1.5, -3, b"raw", "é|0.25"),
        ("SCRIPT LOAD", "return 1"),  # a two-word command name, split like redis-py splits it
        (b"CLIENT SETNAME", "x"),
        ("SET", "k", bytearray(b"v")),  # refused by hiredis: redis-py's own pack converts it
        ("SET", "k", memoryview(b"v")),
        ("PING",),
    ],
)
def test_the_services_packer_sends_the_bytes_redis_py_would(command):
    from redis.connection import HiredisRespSerializer

    from service.redis_conn import FastPacker

    assert FastPacker().pack(*command) == HiredisRespSerializer().pack(*command)


def test_the_services_client_packs_with_the_fast_packer_and_refuses_what_redis_py_refuses(redis_url):
    import redis

    from service.redis_conn import FastPacker, open_client

    client = open_client(redis_url)
    assert client.ping()
    pool = client.connection_pool
    connection = pool.get_connection()
    try:
        assert isinstance(connection._command_packer, FastPacker)
    finally:
        pool.release(connection)
    with pytest.raises(redis.DataError):
        client.execute_command("SET", "k", None)


def test_a_titles_impressions_are_its_segments_sum_and_an_old_hashs_total_is_not_counted_twice():
    from service.store import ArmCounts

    # A hash written before titles' totals were dropped holds "n|a" (= the segments' sum) too.
    raw = {b"n|a": b"7", b"n|new|a": b"3", b"n|power|a": b"4", b"n|low|b": b"2", b"s|a": b"1.5", b"r|a": b"2",
           b"dn|a": b"7.0", b"dn|new|a": b"3.0", b"dn|power|a": b"4.0", b"ds|a": b"1.0", b"e": b"0"}
    counts = ArmCounts.from_hash(raw)
    assert counts.impressions == {"a": 7, "b": 2}
    assert counts.segments["power"]["a"] == (4, 0.0, 0) and counts.reward_sums == {"a": 1.5}
    # decayed by one half-life: each segment's growth sum halves, and so does the title's (their sum)
    half = counts.decayed(now=10.0, half_life_s=10.0)
    assert half.impressions == {"a": 3.5} and half.reward_sums == {"a": 0.5}
    assert half.segments["new"]["a"][0] == 1.5


def test_the_decide_script_makes_one_impression_increment_per_decision(app, client):
    store = app.extensions["store"]
    d = client.get(f"/artwork?profile=inc-user&title={TITLE}").get_json()  # an unknown profile: segment new
    raw = {k.decode(): v.decode() for k, v in store.client.hgetall(store.keys.arms(TITLE)).items()}
    assert {k: v for k, v in raw.items() if k.startswith("n|")} == {f"n|new|{d['artwork']}": "1"}
    assert store.read_counts([TITLE])[TITLE].impressions == {d["artwork"]: 1}


def test_a_pending_decision_is_one_string_with_its_rewards_per_signal(app, client):
    store = app.extensions["store"]
    d = client.get(f"/artwork?profile=pend-user&title={TITLE}").get_json()
    title, token = d["event_id"].rsplit("~", 1)
    assert store.client.type(store.keys.pending(title, token)) == b"string"
    assert 0 < store.client.ttl(store.keys.pending(title, token)) <= app.config["SETTINGS"].attribution_window_s
    assert store.pending(title, token).rewards == {}
    client.post("/reward", json={"event_id": d["event_id"], "reward": 0.75})
    client.post("/reward", json={"event_id": d["event_id"], "signal": "play", "reward": 1})
    pending = store.pending(title, token)
    assert (pending.artwork, pending.segment, pending.profile, pending.policy) == (d["artwork"], "new", "pend-user", "thompson")
    assert pending.propensity == d["propensity"] and pending.rewards == {"click": 0.75, "play": 1.0}


def _old_hash_decision(store, title: str, token: str, fields: dict) -> str:
    """A pending decision as the version before the string layout wrote it (HSET + EXPIRE)."""
    key = store.keys.pending(title, token)
    store.client.hset(key, mapping={"artwork": "str-1-closeup-lead", "segment": "power", "profile": "old-user",
                                    "policy": "thompson", "propensity": "0.25", "ts": "1700000000.5", **fields})
    store.client.expire(key, 300)
    return key


def test_a_decision_pending_as_an_earlier_versions_hash_takes_its_reward_once(app):
    from service.ids import new_event_id

    store = app.extensions["store"]
    event_id = new_event_id(TITLE)
    token = event_id.rsplit("~", 1)[1]
    key = _old_hash_decision(store, TITLE, token, {"rw|play": "1"})
    before = store.read_counts([TITLE])[TITLE]
    first = store.record_reward(TITLE, token, event_id, 1.0, 1700000001.0)
    again = store.record_reward(TITLE, token, event_id, 1.0, 1700000002.0)
    assert (first.status, first.artwork, again.status) == ("recorded", "str-1-closeup-lead", "duplicate")
    after = store.read_counts([TITLE])[TITLE]
    assert after.rewards.get("str-1-closeup-lead", 0) == before.rewards.get("str-1-closeup-lead", 0) + 1
    assert after.segments["power"]["str-1-closeup-lead"][2] == 1
    # now the string layout, with the hash's earlier signal kept, and its expiry
    assert store.pending(TITLE, token).rewards == {"play": 1.0, "click": 1.0} and 0 < store.client.ttl(key) <= 300


def test_a_deferred_decision_pending_as_an_earlier_versions_hash_is_activated_once(app):
    from service.ids import new_event_id

    store = app.extensions["store"]
    event_id = new_event_id(TITLE)
    token = event_id.rsplit("~", 1)[1]
    record = json.dumps({"event_id": event_id, "title": TITLE, "artwork": "str-1-closeup-lead"})
    _old_hash_decision(store, TITLE, token, {"deferred": "1", "record": record})
    assert store.record_reward(TITLE, token, event_id, 1.0, 1700000001.0).status == "inactive"
    assert [store.activate(TITLE, token, 1700000001.0) for _ in range(2)] == ["activated", "duplicate"]
    logged = [f["record"] for _, f in store.read_log(TITLE) if f["type"] == "decision"]
    assert logged == [record]
    assert store.record_reward(TITLE, token, event_id, 1.0, 1700000002.0).status == "recorded"


def test_traffic_per_minute_from_snapshots_is_exact_across_workers_and_activations(make_app):
    """Two workers (stores) decide in minutes 0, 1 and 3, a deferred decision is activated in
    minute 2: each minute's impressions, and a span's, are exactly what was counted then."""
    from service.ids import new_event_id
    from service.store import TRAFFIC_BUCKET_S, DecisionRecord

    workers = [make_app().extensions["store"] for _ in range(2)]
    m0 = int(time.time() // TRAFFIC_BUCKET_S) - 10
    t = lambda minute, s=1.0: (m0 + minute) * TRAFFIC_BUCKET_S + s  # noqa: E731

    def decide(worker, ts: float, artwork: str, deferred: bool = False) -> str:
        event_id = new_event_id(TITLE)
        rec = DecisionRecord(event_id, event_id.rsplit("~", 1)[1], ts, "traffic-user", TITLE, "thompson", ("a", "b"),
                             {}, ((artwork, 0.5),) * 4, deferred=deferred)
        worker.record_decisions([rec], "new")
        return rec.token

    plan = {0: ["a", "a", "b"], 1: ["b", "b", "b", "a"], 3: ["a"]}
    deferred = decide(workers[0], t(0, 30), "b", deferred=True)  # counted when activated, in minute 2
    for minute, artworks in plan.items():
        for i, art in enumerate(artworks):
            decide(workers[i % 2], t(minute, 1 + i), art)
        if minute == 1:
            assert workers[1].activate(TITLE, deferred, t(2, 5)) == "activated"
    points = [range(m0 + m, m0 + m + 1) for m in range(4)] + [range(m0, m0 + 4), range(m0 + 1, m0 + 3)]
    sums = workers[0].traffic_sums({TITLE: points}, now=t(3, 50))[TITLE]
    assert sums == [{"a": 2, "b": 1}, {"a": 1, "b": 3}, {"b": 1}, {"a": 1}, {"a": 4, "b": 5}, {"a": 1, "b": 4}]
    # the recent window (the last 2 minutes: 2 and 3) reads the same snapshots
    assert workers[1].recent_traffic([TITLE], 2, t(3, 50))[TITLE] == {"a": 1, "b": 1}


def test_per_minute_counts_an_earlier_version_left_are_not_read_as_snapshots(app, client, redis_client):
    """Versions before the snapshots kept "<title>:traffic:<minute>" hashes of that minute's
    decisions; after an upgrade they must not pass for snapshots (they expire unread)."""
    store = app.extensions["store"]
    now_minute = int(time.time() // 60)
    for m in range(now_minute - 4, now_minute + 1):
        old = store.keys.arms(TITLE).removesuffix(":arms") + f":traffic:{m}"
        redis_client.hset(old, "str-1-closeup-lead", 3)
    redis_client.hset(store.keys.arms(TITLE), "n|new|str-1-closeup-lead", 100_000)  # impressions made long ago
    d = client.get(f"/artwork?profile=upgrade-user&title={TITLE}").get_json()
    assert store.recent_traffic([TITLE], 5, time.time())[TITLE] == {d["artwork"]: 1}
