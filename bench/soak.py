"""Soak: /artwork and /reward under load, a Redis fault in the middle, and a reconciliation.

    python bench/soak.py                      # 60 s, Redis killed (-9) and restarted at 30 s
    python bench/soak.py --seconds 8          # quick mode
    python bench/soak.py --appendfsync everysec --restart crash   # see what everysec may lose
    python bench/soak.py --mode failover      # Sentinel + 1 replica, WAIT 1; the primary killed (-9)
    python bench/soak.py --mode cluster       # 3 masters + 3 replicas, WAIT 1; a master killed (-9)

Starts everything it needs on loopback and stops it all at the end (also on Ctrl-C, SIGTERM or
an error): a private ``redis-server`` with AOF on, gunicorn (``-c gunicorn.conf.py``, several
workers) and load-generator processes. Each client loops: ``GET /artwork`` for one title or a
small batch; for a share of the decisions served (fallbacks have no event id) ``POST /reward``
0-2 s later, and for a share of those the same reward again (must answer ``duplicate``). A reward answered
503 is retried after ``Retry-After``, as a client should. Midway Redis is stopped (``crash``:
SIGKILL, nothing flushed; ``clean``: SIGTERM) for ``--down`` seconds and started again on the
same port and data directory.

AOF: ``--appendfsync always`` (default) fsyncs before Redis replies, so every write the service
acknowledged survives even a crash; ``everysec`` may lose up to ~1 s of acknowledged writes on a
crash (not on a clean shutdown, which flushes). The reconciliation then reads Redis directly:
every reward acknowledged ``recorded`` must be in the title's log stream exactly once and in the
arm counters (``r|<artwork>``, ``s|<artwork>``) exactly once; nothing lost, nothing doubled.
Prints a table; exits 1 if the reconciliation fails, 2 if the setup fails.

``failover`` and ``cluster`` modes (``REDIS_WAIT_REPLICAS=1``): see ``SentinelRedis`` and
``ClusterRedis``. The killed primary comes back as a replica once a replica has taken over;
until then rewards answer 503 (no replica can confirm them) and are retried. Decisions are not
WAITed, so the few the dead primary had not yet replicated may be lost: reported
(``impressions_lost``, ``rewards_404_for_served_decisions``) and tolerated in these modes only;
a 404 for a decision the log holds always fails the run.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing as mp
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script: the key builder comes from the service itself
    sys.path.insert(0, str(ROOT))

from service.keys import Keys  # noqa: E402
from service.store import ArmCounts, parse_pending  # noqa: E402

VENV_BIN = Path(sys.executable).parent
KEY_PREFIX = "soak"
REWARD_VALUES = (0.25, 0.5, 1.0)  # exact in binary: reward sums compare exactly


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Children:
    """Every process the soak starts, each in its own session so Ctrl-C reaches only us."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def start(self, args: list[str], log: Path, **kw) -> subprocess.Popen:
        with open(log, "ab") as out:
            p = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **kw)
        self.procs.append(p)
        return p

    def stop(self, p: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 10) -> None:
        if p.poll() is None:
            try:
                os.killpg(p.pid, sig)
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)
            except ProcessLookupError:
                pass

    def stop_all(self) -> None:
        for p in reversed(self.procs):
            self.stop(p)


class RedisProcess:
    """redis-server with AOF on a fixed port and data directory, so a restart replays the AOF."""

    def __init__(self, children: Children, data_dir: Path, appendfsync: str, *extra: str, port: int | None = None):
        self.children = children
        self.port = port or free_port()
        self.dir = data_dir
        self.dir.mkdir(parents=True, exist_ok=True)
        self.appendfsync = appendfsync
        self.extra = extra
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir), "--save", ""]
        # A (re)joining replica syncs at once (not after 5 s) and acknowledges within 1 s (not 10 s).
        args += ["--repl-diskless-sync-delay", "0", "--repl-ping-replica-period", "1"]
        args += ["--appendonly", "yes", "--appendfsync", self.appendfsync, *self.extra]
        self.proc = self.children.start(args, self.dir / "redis.log")
        client = redis.Redis(port=self.port, socket_timeout=1)
        deadline = time.monotonic() + 20
        while True:
            try:
                if client.ping():
                    return
            except (redis.ConnectionError, redis.exceptions.BusyLoadingError):
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.02)

    def halt(self, mode: str) -> None:
        """``crash``: SIGKILL (only what was fsynced survives); ``clean``: SIGTERM (flushes)."""
        assert self.proc is not None
        self.children.stop(self.proc, signal.SIGKILL if mode == "crash" else signal.SIGTERM)
        self.proc = None


def free_cluster_port() -> int:
    """A free port whose cluster-bus port (port + 10000) is free too."""
    for _ in range(200):
        port = random.randint(20_000, 50_000)
        with socket.socket() as a, socket.socket() as b:
            try:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10_000))
            except OSError:
                continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


def wait_until(what: str, check, timeout: float = 30.0) -> float:
    """Poll ``check`` (errors count as not yet) until true; seconds it took."""
    started = time.monotonic()
    while True:
        try:
            if check():
                return time.monotonic() - started
        except (redis.RedisError, OSError):
            pass
        if time.monotonic() - started > timeout:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting until {what}")
        time.sleep(0.05)


def replicas_online(port: int, n: int = 1) -> bool:
    info = redis.Redis(port=port, socket_timeout=1).info("replication")
    # Online and acknowledged something: until its first acknowledgement WAIT counts it out.
    online = [v for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)
              and v.get("state") == "online" and v.get("offset", 0) > 0]
    return info["role"] == "master" and len(online) >= n


class SingleRedis:
    """``--mode restart``: one Redis, stopped midway for ``--down`` s and started again on its data."""

    def __init__(self, children: Children, tmp: Path, args: argparse.Namespace):
        self.server = RedisProcess(children, tmp / "redis", args.appendfsync)
        self.args = args

    def start(self) -> None:
        self.server.start()

    def env(self) -> dict[str, str]:
        return {"REDIS_URL": self.server.url}

    def fault(self) -> str:
        self.server.halt(self.args.restart)
        time.sleep(self.args.down)
        self.server.start()  # same port, same directory: the AOF is replayed
        return f"redis {self.args.restart}, restarted on its data"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.server.port)


class SentinelRedis:
    """``--mode failover``: a primary, one replica and three Sentinels (quorum 2); the service
    finds the primary through the Sentinels and WAITs for 1 replica per reward. Midway the
    primary is killed (-9); the Sentinels promote the replica; the old primary is started again
    on its data as a replica of the new one (until then no reward can be acknowledged: 503s)."""

    MASTER = "soak"

    def __init__(self, children: Children, tmp: Path, args: argparse.Namespace):
        self.children, self.tmp = children, tmp
        first = RedisProcess(children, tmp / "redis-a", args.appendfsync)
        self.nodes = [first, RedisProcess(children, tmp / "redis-b", args.appendfsync, "--replicaof", "127.0.0.1", str(first.port))]
        self.sentinels = [free_port() for _ in range(3)]

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        wait_until("the replica is in sync", lambda: replicas_online(self.nodes[0].port))
        for i, port in enumerate(self.sentinels):
            conf = self.tmp / f"sentinel-{i}.conf"  # Sentinel rewrites its own config file
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {self.tmp}\n"
                f"sentinel monitor {self.MASTER} 127.0.0.1 {self.nodes[0].port} 2\n"
                f"sentinel down-after-milliseconds {self.MASTER} 1000\nsentinel failover-timeout {self.MASTER} 5000\n"
            )
            self.children.start(["redis-server", str(conf), "--sentinel"], self.tmp / f"sentinel-{i}.log")

        def sentinels_agree() -> bool:
            for port in self.sentinels:
                state = redis.Redis(port=port, socket_timeout=1).sentinel_master(self.MASTER)
                if state["num-slaves"] < 1 or state["num-other-sentinels"] < len(self.sentinels) - 1:
                    return False
            return True

        wait_until("every Sentinel sees the replica and the other Sentinels", sentinels_agree)

    def primary_port(self) -> int:
        for port in self.sentinels:
            try:
                return int(redis.Redis(port=port, socket_timeout=1).sentinel_get_master_addr_by_name(self.MASTER)[1])
            except (redis.RedisError, OSError, TypeError):
                continue
        raise RuntimeError("no Sentinel names a primary")

    def env(self) -> dict[str, str]:
        return {
            "REDIS_URL": "redis://127.0.0.1/0",  # with Sentinels only the database number is used
            "REDIS_SENTINELS": ",".join(f"127.0.0.1:{p}" for p in self.sentinels),
            "REDIS_SENTINEL_MASTER": self.MASTER, "REDIS_WAIT_REPLICAS": "1",
        }

    def fault(self) -> str:
        old = next(n for n in self.nodes if n.port == self.primary_port())
        old.halt("crash")
        promoted = wait_until("the Sentinels promote the replica", lambda: self.primary_port() != old.port)
        new = self.primary_port()
        # Restarted as a replica of the new primary, as its supervisor would (left to itself it
        # would come back as a primary until the Sentinels' next look at it, ~10 s later).
        old.extra = ("--replicaof", "127.0.0.1", str(new))
        old.start()
        rejoined = wait_until("the old primary is a replica again", lambda: replicas_online(new), timeout=60)
        return (f"primary killed (-9); replica promoted by Sentinel after {promoted:.2f} s; "
                f"old primary back as a replica {rejoined:.2f} s later")

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.primary_port())


class ClusterRedis:
    """``--mode cluster``: a 3-master Redis Cluster with one replica per master, WAIT for 1
    replica per reward. Midway the master of the first title's slot is killed (-9); its replica
    takes over; the killed node is started again on its data and rejoins as a replica."""

    def __init__(self, children: Children, tmp: Path, args: argparse.Namespace):
        self.nodes = []
        for i in range(6):
            port = free_cluster_port()
            d = tmp / f"node-{i}"
            self.nodes.append(RedisProcess(
                children, d, args.appendfsync, "--cluster-enabled", "yes", "--cluster-config-file", str(d / "nodes.conf"),
                "--cluster-node-timeout", "1000", port=port,
            ))
        self.titles: list[str] = []

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        subprocess.run(
            ["redis-cli", "--cluster", "create", *[f"127.0.0.1:{n.port}" for n in self.nodes], "--cluster-replicas", "1", "--cluster-yes"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60,
        )
        wait_until("the cluster is ok on every node", lambda: all(
            redis.Redis(port=n.port, socket_timeout=1).execute_command("CLUSTER INFO")["cluster_state"] == "ok" for n in self.nodes))
        wait_until("every master has its replica in sync", lambda: sum(
            replicas_online(n.port) for n in self.nodes if redis.Redis(port=n.port).info("replication")["role"] == "master") == 3)

    def env(self) -> dict[str, str]:
        return {"REDIS_URL": self.nodes[0].url, "REDIS_CLUSTER": "1", "REDIS_WAIT_REPLICAS": "1"}

    def master_of(self, key: str, via: RedisProcess) -> int:
        slot = redis.Redis(port=via.port, socket_timeout=1).execute_command("CLUSTER KEYSLOT", key)
        for start, end, master, *_ in redis.Redis(port=via.port, socket_timeout=1).execute_command("CLUSTER SLOTS"):
            if start <= slot <= end:
                return int(master[1])
        raise RuntimeError(f"slot {slot} is not served")

    def fault(self) -> str:
        key = Keys(KEY_PREFIX).arms(self.titles[0])
        old = next(n for n in self.nodes if n.port == self.master_of(key, self.nodes[0]))
        witness = next(n for n in self.nodes if n is not old)
        old.halt("crash")
        promoted = wait_until("a replica takes over the killed master's slots", lambda: self.master_of(key, witness) != old.port
                              and redis.Redis(port=witness.port).execute_command("CLUSTER INFO")["cluster_state"] == "ok")
        new = self.master_of(key, witness)
        old.start()  # its nodes.conf says who it was; the cluster makes it a replica of the new master
        rejoined = wait_until("the killed node is a replica again", lambda: replicas_online(new), timeout=60)
        return (f"master of {self.titles[0]} killed (-9); its replica took over after {promoted:.2f} s; "
                f"old master back as a replica {rejoined:.2f} s later")

    def client(self):
        from redis.cluster import RedisCluster

        live = next(n for n in self.nodes if n.proc is not None)
        return RedisCluster(host="127.0.0.1", port=live.port)


TOPOLOGIES = {"restart": SingleRedis, "failover": SentinelRedis, "cluster": ClusterRedis}


def write_catalog(path: Path, n_titles: int) -> list[str]:
    policies = ["thompson", "thompson", "thompson", "ab", "fixed"]
    titles = [f"soak-{i:02d}" for i in range(n_titles)]
    body = {
        "titles": [
            {"id": t, "artworks": [{"id": f"{t}-a{j}"} for j in range(4)], "default": f"{t}-a0", "policy": policies[i % len(policies)]}
            for i, t in enumerate(titles)
        ]
    }
    path.write_text(json.dumps(body))
    return titles


def wait_ready(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"gunicorn on port {port} was not ready within {timeout:.0f} s")


# -- load generator (one process per client) ---------------------------------------------------


@dataclass
class ClientResult:
    statuses: Counter = field(default_factory=Counter)  # "GET /artwork 200" -> n
    latencies: dict = field(default_factory=lambda: defaultdict(list))  # endpoint -> [ms]
    fallbacks: int = 0
    served: Counter = field(default_factory=Counter)  # "title|artwork" -> non-fallback decisions
    rewards: list = field(default_factory=list)  # one dict per rewarded event
    retried_503: int = 0  # reward posts answered 503 and sent again after Retry-After
    transport_errors: int = 0


class Client:
    def __init__(self, port: int, result: ClientResult, give_up_at: float):
        self.port = port
        self.result = result
        self.give_up_at = give_up_at
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, dict, dict]:
        endpoint = path.split("?")[0]
        started = time.perf_counter()
        try:
            self.conn.request(method, path, body=body, headers={"Content-Type": "application/json"} if body else {})
            resp = self.conn.getresponse()
            data = resp.read()
        except OSError:
            # No answer (e.g. a worker restarting): like a 503 for the caller, but counted apart.
            self.conn.close()
            self.result.transport_errors += 1
            self.result.statuses[f"{method} {endpoint} no-answer"] += 1
            return 0, {}, {}
        self.result.latencies[endpoint].append(1000 * (time.perf_counter() - started))
        self.result.statuses[f"{method} {endpoint} {resp.status}"] += 1
        try:
            payload = json.loads(data)
        except ValueError:
            payload = {}
        return resp.status, payload, dict(resp.getheaders())

    def post_reward(self, event_id: str, value: float) -> tuple[str, float]:
        """One attempt: (answer, seconds to wait before retrying; 0 when it was answered)."""
        body = json.dumps({"event_id": event_id, "reward": value}).encode()
        status, payload, headers = self.request("POST", "/reward", body)
        if status == 200:
            return payload["status"], 0.0
        if status == 404:
            return "unknown", 0.0
        if status == 503:
            self.result.retried_503 += 1
            return "retry", float(headers.get("Retry-After", "1"))
        if status == 0:  # no answer at all: retry soon
            return "retry", 0.2
        return f"http-{status}", 0.0


def client_main(index: int, port: int, titles: list[str], seconds: float, options: dict, out: str) -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # the parent cleans up; a client just dies
    rng = random.Random(1000 + index)
    result = ClientResult()
    deadline = time.monotonic() + seconds
    client = Client(port, result, give_up_at=deadline + options["reward_grace_s"])
    # Rewards come a little after their decision (a click is not instant), so decisions served
    # just before the outage get their rewards posted during it. A 503 puts the reward back in
    # the queue for after Retry-After, without holding up the page loads (/artwork) meanwhile.
    queue: list[dict] = []  # {"due", "record", "phase": "first" | "again"}

    def post_due(now: float) -> None:
        for item in [q for q in queue if q["due"] <= now]:
            record = item["record"]
            answer, wait = client.post_reward(record["event_id"], record["reward"])
            if answer == "retry" and now < client.give_up_at:
                item["due"] = now + wait
                record["unanswered"] += item["phase"] == "first"
                continue
            queue.remove(item)
            answer = "unacknowledged" if answer == "retry" else answer
            if item["phase"] == "again":
                record["again"] = answer
                continue
            record["outcome"] = answer
            result.rewards.append(record)
            if answer in ("recorded", "duplicate") and rng.random() < options["duplicate_share"]:
                queue.append({"due": now, "record": record, "phase": "again"})

    n = 0
    while time.monotonic() < deadline:
        post_due(time.monotonic())
        k = 1 if rng.random() < options["single_share"] else rng.randint(2, options["max_batch"])
        chosen = rng.sample(titles, k)
        query = f"profile=p{index}-{n % 500}&" + "&".join(f"title={t}" for t in chosen)
        n += 1
        status, payload, _ = client.request("GET", f"/artwork?{query}")
        if status != 200:
            continue
        for d in payload.get("decisions", [payload]):
            if d["fallback"]:
                result.fallbacks += 1
                continue
            result.served[f"{d['title']}|{d['artwork']}"] += 1
            if rng.random() < options["reward_share"]:
                record = {"event_id": d["event_id"], "title": d["title"], "artwork": d["artwork"],
                          "reward": rng.choice(REWARD_VALUES), "outcome": None, "unanswered": 0, "again": None}
                queue.append({"due": time.monotonic() + rng.uniform(0, options["reward_delay_s"]), "record": record, "phase": "first"})
    while queue:  # load is over: post what is left, then stop (bounded by give_up_at)
        post_due(float("inf") if time.monotonic() >= client.give_up_at else time.monotonic())
        if queue:
            time.sleep(max(0.0, min(q["due"] for q in queue) - time.monotonic()))
    Path(out).write_text(json.dumps({
        "statuses": result.statuses, "latencies": result.latencies, "fallbacks": result.fallbacks,
        "served": result.served, "rewards": result.rewards, "retried_503": result.retried_503,
        "transport_errors": result.transport_errors,
    }))


# -- reconciliation ----------------------------------------------------------------------------


def reconcile(client: redis.Redis, keys: Keys, titles: list[str], rewards: list[dict], served: Counter) -> dict:
    """Compare what clients were told with what Redis holds (log stream and arm counters)."""
    # Acknowledged: Redis said so. 'duplicate' on the first answer means an earlier attempt
    # applied but its reply was lost (a 503 after the script ran); it must be there once too.
    acked = {r["event_id"]: r for r in rewards if r["outcome"] == "recorded"}
    recovered = {r["event_id"]: r for r in rewards if r["outcome"] == "duplicate" and r["unanswered"] > 0}
    expected = {**acked, **recovered}
    unacked = {r["event_id"] for r in rewards if r["outcome"] == "unacknowledged"}

    log_rewards: Counter = Counter()
    log_arm: dict[str, str] = {}  # event id -> "title|artwork" of its reward entry
    log_per_arm: Counter = Counter()
    log_sum_per_arm: defaultdict = defaultdict(float)
    decisions_logged: Counter = Counter()
    decision_events: set[str] = set()
    counters: dict[str, ArmCounts] = {}
    for t in titles:
        last = "-"
        while True:
            page = client.xrange(keys.log(t), min=last, max="+", count=10_000)
            for _entry_id, fields in page:
                f = {k.decode(): v.decode() for k, v in fields.items()}
                if f["type"] == "reward":
                    log_rewards[f["event_id"]] += 1
                    log_arm[f["event_id"]] = f"{t}|{f['artwork']}"
                    log_per_arm[f"{t}|{f['artwork']}"] += 1
                    log_sum_per_arm[f"{t}|{f['artwork']}"] += float(f["reward"])
                else:
                    decisions_logged[t] += 1
                    decision_events.add(json.loads(f["record"])["event_id"])
            if len(page) < 10_000:
                break
            last = "(" + page[-1][0].decode()
        counters[t] = ArmCounts.from_hash(client.hgetall(keys.arms(t)))

    pipe = client.pipeline(transaction=False)
    for e in expected:
        title, token = e.rsplit("~", 1)
        pipe.get(keys.pending(title, token))
    # the reward signal's aggregate is on the pending decision (the soak's titles learn from click)
    marked = {e for e, raw in zip(expected, pipe.execute(), strict=True) if raw is not None and "click" in parse_pending(raw).rewards}

    def per_arm(field: str) -> dict:
        return {f"{t}|{a}": v for t in titles for a, v in getattr(counters[t], field).items()}

    r_counter, s_counter, n_counter = per_arm("rewards"), per_arm("reward_sums"), per_arm("impressions")
    arms = sorted(set(r_counter) | set(s_counter) | set(n_counter))
    r_counter = {a: r_counter.get(a, 0) for a in arms}
    s_counter = {a: s_counter.get(a, 0.0) for a in arms}
    expected_per_arm = Counter(f"{r['title']}|{r['artwork']}" for r in expected.values())
    expected_sum = defaultdict(float)
    for r in expected.values():
        expected_sum[f"{r['title']}|{r['artwork']}"] += r["reward"]

    in_log = sum(1 for e in expected if log_rewards[e] == 1)
    lost_log = [e for e in expected if log_rewards[e] == 0]
    double_log = [e for e, c in log_rewards.items() if c > 1]
    not_expected = [e for e in log_rewards if e not in expected]  # applied, client never told
    # Counters: per arm, r| must equal the log's reward entries and s| their sum (one script
    # writes both), and cover every acknowledged reward of that arm.
    arm_mismatch = [a for a in arms if r_counter[a] != log_per_arm[a] or abs(s_counter[a] - log_sum_per_arm[a]) > 1e-9]
    arm_short = [a for a in set(expected_per_arm) | set(arms) if r_counter.get(a, 0) < expected_per_arm[a]]
    not_expected_per_arm = Counter(log_arm[e] for e in not_expected)
    arm_over = [a for a in arms if r_counter[a] > expected_per_arm[a] + not_expected_per_arm[a]]
    sums_ok = all(abs(s_counter.get(a, 0.0) - expected_sum[a]) < 1e-9 for a in expected_sum) if not not_expected else None
    dup_recorded = [r["event_id"] for r in rewards if r["again"] == "recorded"]
    unknown = [r["event_id"] for r in rewards if r["outcome"] == "unknown"]
    # A 404 is right only for a decision Redis lost (not WAITed: a failover may lose the last
    # few); for a decision in the log it would be a reward refused.
    unknown_logged = [e for e in unknown if e in decision_events]
    impressions_lost = {a: served[a] - n_counter.get(a, 0) for a in served if served[a] > n_counter.get(a, 0)}
    decision_log_mismatch = [t for t in titles if decisions_logged[t] != sum(n_counter[a] for a in arms if a.startswith(t + "|"))]
    return {
        "recorded_acks": len(acked),
        "recovered_as_duplicate_after_retry": len(recovered),
        "acked_after_503_retry": sum(1 for r in expected.values() if r["unanswered"] > 0),
        "expected_rewards": len(expected),
        "present_in_log_once": in_log,
        "present_in_stats": len(marked),
        "stats_counters_sum": sum(r_counter.values()),
        "lost": len(set(lost_log) | (set(expected) - marked)),
        "double": len(double_log) + len(dup_recorded) + len(arm_over),
        "lost_in_counters_arms": sorted(arm_short),
        "counters_disagree_with_log_arms": sorted(arm_mismatch),
        "reward_sums_match": sums_ok,
        "duplicates_posted": sum(1 for r in rewards if r["again"] is not None),
        "duplicates_answered_duplicate": sum(1 for r in rewards if r["again"] == "duplicate"),
        "duplicates_answered_recorded": len(dup_recorded),
        "unacknowledged_gave_up": len(unacked),
        "applied_but_never_acknowledged": len(not_expected),
        "rewards_404_for_served_decisions": len(unknown),
        "rewards_404_for_logged_decisions": len(unknown_logged),
        "impressions_served": sum(served.values()),
        "impressions_counted": sum(n_counter.values()),
        "impressions_lost": sum(impressions_lost.values()),
        "decision_log_matches_counters": not decision_log_mismatch,
    }


def percentile(sorted_values: list[float], p: float) -> float | None:
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(p / 100 * len(sorted_values)))]


def reconciliation_ok(r: dict, decisions_may_be_lost: bool = False) -> bool:
    """Nothing acknowledged lost or doubled. ``decisions_may_be_lost``: after a failover, the
    decisions the dead primary had not yet replicated are gone (decisions are not WAITed), and
    so the impressions served just before it and their rewards' 404s are tolerated."""
    lost_ok = decisions_may_be_lost or (r["rewards_404_for_served_decisions"] == 0 and r["impressions_lost"] == 0)
    return (
        lost_ok
        and r["rewards_404_for_logged_decisions"] == 0
        and r["lost"] == 0
        and r["double"] == 0
        and r["present_in_log_once"] == r["expected_rewards"] == r["present_in_stats"]
        and not r["lost_in_counters_arms"]
        and not r["counters_disagree_with_log_arms"]
        and r["reward_sums_match"] is not False
        and r["decision_log_matches_counters"]
        and r["expected_rewards"] > 0
    )


def print_report(report: dict) -> None:
    cfg, load, rec = report["config"], report["load"], report["reconciliation"]
    print(
        f"\nSoak ({cfg['mode']} mode): {cfg['seconds']:.0f} s, {cfg['workers']} gunicorn workers, {cfg['clients']} client processes, "
        f"AOF appendfsync={cfg['appendfsync']}"
    )
    print(f"Fault at {cfg['restart_at_s']:.1f} s: {report['fault']}; {report['outage_s']:.2f} s until done")
    print(f"\n{'requests':<44}{load['requests']:>10}")
    print(f"{'  per second':<44}{load['requests'] / cfg['seconds']:>10.0f}")
    for kind, n in sorted(load["statuses"].items()):
        print(f"{'  ' + kind:<44}{n:>10}")
    print(f"{'decisions served by a policy':<44}{rec['impressions_served']:>10}")
    print(f"{'fallback decisions (Redis unavailable)':<44}{load['fallbacks']:>10}")
    print(f"{'reward posts retried after 503':<44}{load['retried_503']:>10}")
    print(f"\n{'latency (ms)':<24}{'n':>9}{'p50':>9}{'p99':>9}{'max':>9}")
    for endpoint, lat in load["latency_ms"].items():
        print(f"{endpoint:<24}{lat['n']:>9}{lat['p50']:>9.2f}{lat['p99']:>9.2f}{lat['max']:>9.1f}")
    print("\nReconciliation (Redis read directly after the run)")
    for k, v in rec.items():
        print(f"  {k:<42}{v!s:>12}")
    print(f"\nRESULT: {'OK' if report['ok'] else 'FAILED'} (lost {rec['lost']}, double {rec['double']})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="load duration (default 60; 8 is a quick run)")
    parser.add_argument("--workers", type=int, default=3, help="gunicorn workers")
    parser.add_argument("--clients", type=int, default=4, help="load-generator processes")
    parser.add_argument("--titles", type=int, default=10)
    parser.add_argument("--mode", choices=list(TOPOLOGIES), default="restart",
                        help="restart: one Redis killed and restarted; failover: Sentinel + 1 replica, primary killed; "
                             "cluster: 3 masters + 3 replicas, a master killed")
    parser.add_argument("--appendfsync", choices=["always", "everysec"], default="always")
    parser.add_argument("--restart", choices=["crash", "clean", "none"], default="crash",
                        help="restart mode: how Redis is stopped (none: no fault in any mode)")
    parser.add_argument("--down", type=float, default=1.5, help="restart mode: seconds Redis stays down")
    parser.add_argument("--reward-share", type=float, default=0.3, help="share of decisions rewarded")
    parser.add_argument("--duplicate-share", type=float, default=0.2, help="share of rewards posted twice")
    parser.add_argument("--reward-delay", type=float, default=2.0, help="rewards come 0..this many seconds after their decision")
    parser.add_argument("--json", type=Path, help="also write the report here")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, AOF)")
    args = parser.parse_args(argv)
    if shutil.which("redis-server") is None:
        print("soak needs redis-server (Debian: apt-get install redis-server)", file=sys.stderr)
        return 2

    # SIGTERM like Ctrl-C: unwind through `finally`, which stops every child.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    children = Children()
    clients: list[mp.Process] = []
    tmp = Path(tempfile.mkdtemp(prefix="soak-"))
    try:
        backend = TOPOLOGIES[args.mode](children, tmp, args)
        backend.start()
        titles = write_catalog(tmp / "catalog.json", args.titles)
        backend.titles = titles
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("REDIS_")}
        env.update({
            **backend.env(), "KEY_PREFIX": KEY_PREFIX, "CATALOG_PATH": str(tmp / "catalog.json"),
            "LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT), "PROMETHEUS_MULTIPROC_DIR": str(tmp / "prometheus"),
        })
        (tmp / "prometheus").mkdir()
        children.start(
            [str(VENV_BIN / "gunicorn"), "-c", str(ROOT / "gunicorn.conf.py"), "--workers", str(args.workers),
             "--bind", f"127.0.0.1:{port}", "--log-level", "warning", "service.app:create_app()"],
            tmp / "gunicorn.log", env=env, cwd=ROOT,
        )
        wait_ready(port)

        options = {"single_share": 0.6, "max_batch": 5, "reward_share": args.reward_share,
                   "duplicate_share": args.duplicate_share, "reward_delay_s": args.reward_delay, "reward_grace_s": 30.0}
        ctx = mp.get_context("fork")
        started = time.monotonic()
        for i in range(args.clients):
            p = ctx.Process(target=client_main, args=(i, port, titles, args.seconds, options, str(tmp / f"client{i}.json")), daemon=True)
            p.start()
            clients.append(p)

        outage, fault = 0.0, "none"
        restart_at = args.seconds / 2
        if args.restart != "none":
            time.sleep(max(0.0, started + restart_at - time.monotonic()))
            down_at = time.monotonic()
            fault = backend.fault()
            outage = time.monotonic() - down_at
            print(f"  at {down_at - started:.1f} s: {fault}", file=sys.stderr)

        for p in clients:
            p.join(max(1.0, started + args.seconds + options["reward_grace_s"] + 15 - time.monotonic()))
            if p.is_alive() or p.exitcode != 0:
                raise RuntimeError(f"load client {p.pid} did not finish cleanly (exit code {p.exitcode})")

        statuses, served, latencies = Counter(), Counter(), defaultdict(list)
        rewards, fallbacks, retried, transport_errors = [], 0, 0, 0
        for i in range(args.clients):
            part = json.loads((tmp / f"client{i}.json").read_text())
            statuses.update(part["statuses"])
            served.update(part["served"])
            for endpoint, values in part["latencies"].items():
                latencies[endpoint].extend(values)
            rewards += part["rewards"]
            fallbacks += part["fallbacks"]
            retried += part["retried_503"]
            transport_errors += part["transport_errors"]

        rec = reconcile(backend.client(), Keys(KEY_PREFIX), titles, rewards, served)
        latency = {}
        for endpoint in sorted(latencies):
            values = sorted(latencies[endpoint])
            latency[endpoint] = {"n": len(values), "p50": percentile(values, 50), "p99": percentile(values, 99), "max": values[-1]}
        report = {
            "config": {**vars(args), "json": None, "restart_at_s": restart_at},
            "outage_s": outage,
            "fault": fault,
            "load": {
                "requests": sum(statuses.values()),
                "statuses": dict(statuses),
                "non_200": {k: v for k, v in statuses.items() if not k.endswith(" 200")},
                "fallbacks": fallbacks,
                "retried_503": retried,
                "transport_errors": transport_errors,
                "latency_ms": latency,
            },
            "reconciliation": rec,
        }
        report["ok"] = reconciliation_ok(rec, decisions_may_be_lost=args.mode != "restart")
        print_report(report)
        if args.json:
            args.json.write_text(json.dumps(report, indent=2, default=str))
        return 0 if report["ok"] else 1
    except KeyboardInterrupt:
        print("soak: interrupted; stopping everything", file=sys.stderr)
        return 130
    except RuntimeError as exc:
        print(f"soak: {exc} (logs in {tmp})", file=sys.stderr)
        args.keep = True
        return 2
    finally:
        for p in clients:
            if p.is_alive():
                p.kill()
                p.join(5)
        children.stop_all()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
