"""Shared fixtures: real Redis servers (private, on loopback), fakeredis, and app factories.

Store tests run against a real ``redis-server`` that this test session starts on a free
loopback port (so tests never touch, stop or flush anybody else's Redis). Without the binary,
``TEST_REDIS_URL`` (or a server answering on 127.0.0.1:6379) is used, each test under its own
key prefix. Fault tests always start their own server, which they may stop and restart.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest
import redis

from service.app import create_app
from service.config import load_settings

REDIS_SERVER = shutil.which("redis-server")
REDIS_CLI = shutil.which("redis-cli")
# TEST_REDIS_CLUSTER=1: the store tests run against a 3-master Redis Cluster on loopback.
CLUSTER = os.environ.get("TEST_REDIS_CLUSTER") == "1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_cluster_port() -> int:
    """A free port whose cluster-bus port (port + 10000) is free and valid too."""
    import random

    for _ in range(200):
        port = random.randint(20_000, 50_000)
        if _port_free(port) and _port_free(port + 10_000):
            return port
    raise RuntimeError("no free port pair for a cluster node")


class RedisServer:
    """A redis-server child process on loopback that a test may stop and start again."""

    def __init__(self, port: int | None = None, *extra_args: str):
        if REDIS_SERVER is None:
            raise RuntimeError("redis-server is not installed")
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="redis-test-"))
        self.extra_args = extra_args
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        args = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        args += ["--dir", str(self.dir), *self.extra_args]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_timeout=0.5)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class RedisClusterServers:
    """Three cluster-enabled masters on loopback (with ``replicas`` each), joined with
    ``redis-cli --cluster create``."""

    def __init__(self, masters: int = 3, replicas: int = 0):
        if REDIS_SERVER is None or REDIS_CLI is None:
            raise RuntimeError("redis-server and redis-cli are needed for a cluster")
        self.replicas = replicas
        self.nodes = []
        for _ in range(masters * (1 + replicas)):
            node = RedisServer(free_cluster_port())
            node.extra_args = ("--cluster-enabled", "yes", "--cluster-config-file", str(node.dir / "nodes.conf"), "--cluster-node-timeout", "2000",
                               "--repl-diskless-sync-delay", "0", "--repl-ping-replica-period", "1")
            self.nodes.append(node)

    @property
    def url(self) -> str:
        return self.nodes[0].url

    def start(self) -> RedisClusterServers:
        for node in self.nodes:
            node.start()
        subprocess.run(
            [REDIS_CLI, "--cluster", "create", *[f"127.0.0.1:{n.port}" for n in self.nodes], "--cluster-replicas", str(self.replicas), "--cluster-yes"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30,
        )
        deadline = time.monotonic() + 20
        for node in self.nodes:
            client = redis.Redis(port=node.port)
            while client.execute_command("CLUSTER INFO").get("cluster_state") != "ok":
                if time.monotonic() > deadline:
                    raise RuntimeError("the test cluster did not reach cluster_state:ok")
                time.sleep(0.05)
        return self

    def cleanup(self) -> None:
        for node in self.nodes:
            node.cleanup()


def _answers(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5).ping())
    except redis.RedisError:
        return False


@pytest.fixture(scope="session")
def redis_url():
    """URL of a real Redis for this test session."""
    if CLUSTER:
        cluster = RedisClusterServers().start()
        yield cluster.url
        cluster.cleanup()
        return
    if os.environ.get("TEST_REDIS_URL"):
        yield os.environ["TEST_REDIS_URL"]
        return
    if REDIS_SERVER is not None:
        server = RedisServer().start()
        yield server.url
        server.cleanup()
        return
    if _answers("redis://127.0.0.1:6379/0"):
        yield "redis://127.0.0.1:6379/0"
        return
    pytest.skip("no real Redis: install redis-server (scripts/test does) or set TEST_REDIS_URL")


@pytest.fixture
def redis_server_factory():
    """Start private Redis servers (that the test may stop); all are cleaned up after the test."""
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed (fault tests need a server they can stop)")
    servers: list[RedisServer] = []

    def make(*extra_args: str, port: int | None = None) -> RedisServer:
        server = RedisServer(port, *extra_args).start()
        servers.append(server)
        return server

    yield make
    for s in servers:
        s.cleanup()


@pytest.fixture
def key_prefix() -> str:
    return "t" + uuid.uuid4().hex[:12]


def client_for(url: str):
    if CLUSTER:
        from redis.cluster import RedisCluster

        return RedisCluster.from_url(url)
    return redis.Redis.from_url(url)


@pytest.fixture
def redis_client(redis_url):
    client = client_for(redis_url)
    yield client
    client.close()


@pytest.fixture
def make_app(redis_url, key_prefix):
    """Factory: a Flask app on the real Redis, under this test's key prefix."""

    def make(redis_url_override: str | None = None, **overrides):
        settings = load_settings(
            {},
            redis_url=redis_url_override or redis_url,
            key_prefix=overrides.pop("key_prefix", key_prefix),
            rng_seed=overrides.pop("rng_seed", 12345),
            admin_token=overrides.pop("admin_token", "test-token"),
            redis_cluster=overrides.pop("redis_cluster", CLUSTER and redis_url_override is None),
            **overrides,
        )
        app = create_app(settings)
        app.config["TESTING"] = True
        return app

    return make


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def fake_app():
    """An app on fakeredis: fast unit tests of HTTP behaviour (not a substitute for store tests)."""
    import fakeredis

    settings = load_settings({}, rng_seed=7, admin_token="test-token", redis_embedded=True)
    app = create_app(settings, redis_client=fakeredis.FakeRedis())
    app.config["TESTING"] = True
    return app


ADMIN = {"Authorization": "Bearer test-token"}
