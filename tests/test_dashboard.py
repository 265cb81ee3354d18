"""``/dashboard`` rendered by a real headless Chromium against the app on a loopback port.

The browser runs the page's script (``--virtual-time-budget``), which fetches
``/dashboard/data``; the test compares the numbers in the rendered DOM with ``/stats`` and
writes a screenshot to ``out/dashboard.png``.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
from html.parser import HTMLParser
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from tests.conftest import ADMIN

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
OUT_DIR = Path(__file__).resolve().parent.parent / "out"
SEGMENT_PROFILES = {"power": "fan", "new": "newbie"}


class DashboardDom(HTMLParser):
    """Collects the page's ``data-*`` marked cells and the titles of its cards."""

    def __init__(self) -> None:
        super().__init__()
        self.cards: list[str] = []
        self.cells: dict[tuple[str, str, str], str] = {}
        self.policies: list[str] = []
        self.segments: list[str] = []
        self.rects = 0
        self._open: tuple | None = None

    def handle_starttag(self, tag: str, attrs: list) -> None:
        a = dict(attrs)
        if tag == "section" and "data-title" in a:
            self.cards.append(a["data-title"])
        elif tag == "td" and "data-field" in a:
            self._open = (a["data-title"], a["data-artwork"], a["data-field"])
            self.cells[self._open] = ""
        elif tag == "span" and a.get("data-field") == "policy":
            self._open = ("policy",)
        elif tag == "tr" and "data-segment" in a:
            self.segments.append(a["data-segment"])
        elif tag == "rect":
            self.rects += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "span"):
            self._open = None

    def handle_data(self, data: str) -> None:
        if self._open == ("policy",):
            self.policies.append(data)
        elif self._open is not None:
            self.cells[self._open] += data


@pytest.fixture
def live_url(make_app):
    """The app served by werkzeug in a thread on a free loopback port."""
    app = make_app(log_level="WARNING")
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", app
    server.shutdown()
    thread.join(5)


def serve_traffic(client, titles: list[str], requests: int) -> None:
    """Batch decisions for every title; a deterministic third of them rewarded."""
    for seg, profile in SEGMENT_PROFILES.items():
        client.put(f"/profiles/{profile}", json={"segment": seg}, headers=ADMIN)
    for i in range(requests):
        profile = list(SEGMENT_PROFILES.values())[i % 2] if i % 3 else f"p{i}"
        body = client.get("/artwork", query_string=[("profile", profile)] + [("title", t) for t in titles]).get_json()
        for k, d in enumerate(body["decisions"]):
            if (i + k) % 3 == 0:
                client.post("/reward", json={"event_id": d["event_id"]})


def render(url: str, tmp_path: Path, screenshot: Path) -> str:
    """The DOM after the page's script ran; also writes the screenshot."""
    args = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'chromium-profile'}", "--virtual-time-budget=5000",
        "--window-size=1300,2400", f"--screenshot={screenshot}", "--dump-dom", url,
    ]  # fmt: skip
    done = subprocess.run(args, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (scripts/test installs Debian's chromium as root)")
def test_dashboard_in_headless_chromium_shows_every_title_with_its_numbers(live_url, tmp_path):
    url, app = live_url
    client = app.test_client()
    titles = sorted(client.get("/catalog").get_json()["titles"], key=lambda t: t["id"])
    title_ids = [t["id"] for t in titles]
    client.put("/catalog/night-shift", json={**titles[title_ids.index("night-shift")], "policy": "fixed"}, headers=ADMIN)
    serve_traffic(client, title_ids, requests=30)
    stats = {t["title"]: t for t in client.get("/stats").get_json()["titles"]}

    OUT_DIR.mkdir(exist_ok=True)
    screenshot = OUT_DIR / "dashboard.png"
    screenshot.unlink(missing_ok=True)
    dom = DashboardDom()
    dom.feed(render(f"{url}/dashboard?refresh=60", tmp_path, screenshot))
    print(f"dashboard screenshot: {screenshot}")

    assert dom.cards == title_ids
    assert dom.policies == [stats[t]["policy"] for t in title_ids] and "fixed" in dom.policies
    for t in title_ids:
        for row in stats[t]["artworks"]:
            key = (t, row["artwork"])
            assert dom.cells[(*key, "impressions")] == f"{row['impressions']:,}"
            assert dom.cells[(*key, "rewards")] == str(row["rewards"])
            ctr = "–" if row["ctr"] is None else f"{100 * row['ctr']:.2f}%"
            assert dom.cells[(*key, "ctr")] == ctr
            # rewards without a signal are clicks: the click rate is the CTR
            assert dom.cells[(*key, "click_rate")] == ctr
            assert dom.cells[(*key, "probability_best")] == f"{100 * row['probability_best']:.1f}%"
    assert sum(stats[t]["impressions"] for t in title_ids) == 30 * len(title_ids)
    assert {"power", "new"} <= set(dom.segments)
    assert dom.rects >= len(title_ids)  # at least one history bar per title
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and screenshot.stat().st_size > 20_000


def test_dashboard_page_loads_nothing_from_other_hosts(fake_app):
    html = fake_app.test_client().get("/dashboard").get_data(as_text=True)
    assert "<script>" in html and "dashboard/data" in html
    assert " src=" not in html and "<link" not in html  # inline script and styles only


def test_dashboard_data_has_history_and_health_counters(fake_app):
    client = fake_app.test_client()
    for i in range(5):
        client.get(f"/artwork?profile=p{i}&title=stranger-lights")
    body = client.get("/dashboard/data?minutes=3").get_json()
    title = next(t for t in body["titles"] if t["title"] == "stranger-lights")
    assert len(title["history"]) == 3 and sum(sum(b["counts"].values()) for b in title["history"]) == 5
    assert body["bucket_s"] == 60 and body["totals"]["responses"]["2xx"] == 5


@pytest.mark.parametrize("query", ["minutes=0", "minutes=abc", "minutes=99999", "refresh=0"])
def test_dashboard_rejects_bad_parameters(fake_app, query):
    path = "/dashboard" if query.startswith("refresh") else "/dashboard/data"
    r = fake_app.test_client().get(f"{path}?{query}")
    assert r.status_code == 400 and r.get_json()["error"]["code"] == "invalid_input"


def test_dashboard_data_is_503_when_redis_is_down(make_app, redis_server_factory):
    server = redis_server_factory()
    app = make_app(server.url)
    client = app.test_client()
    server.stop()
    r = client.get("/dashboard/data")
    assert r.status_code == 503 and r.get_json()["error"]["code"] == "store_unavailable"


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (scripts/test installs Debian's chromium as root)")
def test_dashboard_behind_ops_token_passes_its_token_to_its_data_requests(make_app, tmp_path):
    app = make_app(log_level="WARNING", ops_token="ops-t")
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        title_ids = sorted(t["id"] for t in app.test_client().get("/catalog").get_json()["titles"])
        dom = DashboardDom()
        dom.feed(render(f"{url}/dashboard?refresh=60&token=ops-t", tmp_path, tmp_path / "shot.png"))
        assert dom.cards == title_ids  # /dashboard/data answered the page's own request
        assert app.test_client().get("/dashboard/data").status_code == 401
    finally:
        server.shutdown()
        thread.join(5)
