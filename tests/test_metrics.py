"""``/metrics``: Prometheus text, in one process and summed over several gunicorn workers."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from service.metrics import NullMetrics
from service.prometheus_metrics import PrometheusMetrics
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parent.parent
TITLES = ("stranger-lights", "the-last-heist")


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    """(sample name, labels) -> value, summed when a sample repeats."""
    out: dict[tuple[str, frozenset], float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = (s.name, frozenset(s.labels.items()))
            out[key] = out.get(key, 0.0) + s.value
    return out


def total(parsed: dict, name: str, **labels: str) -> float:
    want = set(labels.items())
    return sum(v for (n, ls), v in parsed.items() if n == name and want <= ls)


def test_one_process_counts_requests_decisions_and_rewards_by_title_and_policy(client):
    events = []
    for i in range(6):
        r = client.get("/artwork", query_string=[("profile", f"p{i}"), *(("title", t) for t in TITLES)])
        events += [d["event_id"] for d in r.get_json()["decisions"]]
    client.get("/artwork?profile=p1")  # 400
    for e in events[:3]:
        client.post("/reward", json={"event_id": e})
    client.post("/reward", json={"event_id": events[0]})  # duplicate
    parsed = samples(client.get("/metrics").get_data(as_text=True))

    assert total(parsed, "artwork_http_request_duration_seconds_count", endpoint="/artwork", status="200") == 6
    assert total(parsed, "artwork_http_request_duration_seconds_count", endpoint="/artwork", status="400") == 1
    assert total(parsed, "artwork_http_request_duration_seconds_bucket", endpoint="/artwork", status="200", le="+Inf") == 6
    for t in TITLES:
        assert total(parsed, "artwork_decisions_total", title=t, policy="thompson") == 6
    assert total(parsed, "artwork_rewards_total", policy="thompson", status="recorded") == 3
    assert total(parsed, "artwork_rewards_total", policy="thompson", status="duplicate") == 1


def test_routes_are_labelled_by_pattern_not_by_path(client):
    for path in ("/stats/stranger-lights", "/stats/the-last-heist", "/no/such/page"):
        client.get(path)
    parsed = samples(client.get("/metrics").get_data(as_text=True))
    assert total(parsed, "artwork_http_request_duration_seconds_count", endpoint="/stats/<title_id>") == 2
    assert total(parsed, "artwork_http_request_duration_seconds_count", endpoint="unmatched", status="404") == 1


def test_redis_outage_counts_fallbacks_per_title_and_one_store_error_per_request(make_app, redis_server_factory):
    server = redis_server_factory()
    client = make_app(server.url).test_client()
    server.stop()
    for i in range(2):
        r = client.get("/artwork", query_string=[("profile", f"p{i}"), *(("title", t) for t in TITLES)])
        assert all(d["fallback"] for d in r.get_json()["decisions"])
    client.post("/reward", json={"event_id": f"stranger-lights~{'0' * 32}"})  # 503
    parsed = samples(client.get("/metrics").get_data(as_text=True))
    for t in TITLES:
        assert total(parsed, "artwork_fallbacks_total", title=t) == 2
    assert total(parsed, "artwork_store_errors_total", operation="decide") == 2
    assert total(parsed, "artwork_store_errors_total", operation="reward") == 1
    assert total(parsed, "artwork_decisions_total") == 0


@pytest.mark.parametrize("metrics_class", [PrometheusMetrics, NullMetrics])
def test_model_version_gauge_can_be_set_through_the_hook(metrics_class):
    metrics = metrics_class()
    metrics.observe_model_version("stranger-lights", 7)
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain")
    if metrics_class is PrometheusMetrics:
        assert total(samples(body.decode()), "artwork_model_version", title="stranger-lights") == 7


# -- several gunicorn workers


class Gunicorn:
    """``gunicorn -c gunicorn.conf.py`` with 2 workers on a free loopback port."""

    def __init__(self, tmp_path: Path, redis_url: str, key_prefix: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp_path / "gunicorn.log"
        env = {
            **os.environ,
            "REDIS_URL": redis_url,
            "KEY_PREFIX": key_prefix,
            "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus"),
            "LOG_LEVEL": "INFO",
        }
        (tmp_path / "prometheus").mkdir()
        self.log = self.log_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--workers", "2",
             "--bind", f"127.0.0.1:{self.port}", "service.app:create_app()"],
            cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def wait_ready(self, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log_path.read_text()[-3000:]
            try:
                if requests.get(f"{self.url}/readyz", timeout=5).status_code == 200:
                    return
            except (requests.ConnectionError, requests.Timeout):
                pass
            time.sleep(0.1)
        raise AssertionError("gunicorn did not become ready:\n" + self.log_path.read_text()[-3000:])

    def access_lines(self, path: str) -> list[dict]:
        lines = [json.loads(line) for line in self.log_path.read_text().splitlines() if line.startswith("{")]
        return [e for e in lines if e.get("logger") == "service.access" and e.get("path") == path]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.log.close()


@pytest.mark.slow
def test_metrics_sum_the_counts_of_every_gunicorn_worker(tmp_path, redis_url, key_prefix):
    server = Gunicorn(tmp_path, redis_url, key_prefix)
    try:
        server.wait_ready()
        query = "&".join(f"title={t}" for t in TITLES)

        def one(i: int) -> dict:
            return requests.get(f"{server.url}/artwork?profile=p{i}&{query}", timeout=5).json()

        sent, events = 0, []
        # Concurrent batches until both workers have served some (bounded), then a few more.
        with ThreadPoolExecutor(6) as pool:
            for _ in range(20):
                events += [d["event_id"] for body in pool.map(one, range(sent, sent + 12)) for d in body["decisions"]]
                sent += 12
                if len({e["pid"] for e in server.access_lines("/artwork")}) >= 2 and sent >= 48:
                    break
            rewarded = list(pool.map(lambda e: requests.post(f"{server.url}/reward", json={"event_id": e}, timeout=5).status_code, events[::5]))
        assert set(rewarded) == {200}
        pids = {e["pid"] for e in server.access_lines("/artwork")}
        assert len(pids) >= 2, f"only worker(s) {pids} served /artwork"

        for _ in range(3):  # whichever worker answers the scrape, the sums are the same
            parsed = samples(requests.get(f"{server.url}/metrics", timeout=5).text)
            assert total(parsed, "artwork_http_request_duration_seconds_count", endpoint="/artwork") == sent
            for t in TITLES:
                assert total(parsed, "artwork_decisions_total", title=t, policy="thompson") == sent
            assert total(parsed, "artwork_rewards_total", status="recorded") == len(rewarded)
    finally:
        server.stop()
    assert server.proc.returncode is not None


@pytest.mark.slow
def test_gunicorn_accepts_the_documented_largest_batch(tmp_path, redis_url, key_prefix):
    """50 titles of 128 characters fit gunicorn's request line (its default 4094 bytes gave an
    HTML 414): unknown titles, so the answer is the app's JSON 404, not gunicorn's page."""
    server = Gunicorn(tmp_path, redis_url, key_prefix)
    try:
        server.wait_ready()
        titles = [f"{i:03d}" + "t" * 125 for i in range(50)]
        query = "&".join(f"title={t}" for t in titles)
        r = requests.get(f"{server.url}/artwork?profile={'p' * 128}&{query}&device=tv&hour=7", timeout=10)
        assert len(r.request.url) > 6_500
        assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_title"
    finally:
        server.stop()
