"""The README's configuration table: every variable the service reads, with its true default and,
where a test can see it, the effect the table says it has (set through the environment, so a
variable wired to the wrong setting fails here)."""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import fields
from pathlib import Path

import pytest
import redis

from service.app import create_app
from service.config import PROJECT_ROOT, VARIABLES, Settings, load_settings

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
ROW = re.compile(r"^\| `([A-Z_]+)` \| ([^|]+) \| ([^|]+) \|$", re.MULTILINE)
TABLE = {name: (default.strip(), meaning.strip()) for name, default, meaning in ROW.findall(README)}
DEFAULTS = {f.name: f.default for f in fields(Settings)}
TITLE = "stranger-lights"


def test_the_table_lists_exactly_the_variables_the_service_reads():
    assert set(TABLE) == set(VARIABLES)


@pytest.mark.parametrize("name", sorted(VARIABLES))
def test_documented_default_is_the_default(name):
    field, parse, _doc = VARIABLES[name]
    cell = TABLE[name][0]
    if cell == "(empty)":
        assert DEFAULTS[field] in ("", ())
    elif cell == "(unset)":
        assert DEFAULTS[field] is None
    else:
        text = cell.strip("`")
        value = parse(text)  # type: ignore[operator]
        if name == "CATALOG_PATH":  # documented relative to the project
            value = str(PROJECT_ROOT / text)
        assert value == DEFAULTS[field], f"README says {cell}, the default is {DEFAULTS[field]!r}"


# -- effects, each set through the environment variable's own name


@pytest.fixture
def env_app(redis_url):
    """Factory: an app whose settings come from ``env`` (plus a private Redis key prefix)."""

    def make(**env: str):
        base = {"REDIS_URL": redis_url, "KEY_PREFIX": "t" + uuid.uuid4().hex[:12], "RNG_SEED": "1", "LOG_LEVEL": "WARNING"}
        app = create_app(load_settings({**base, **env}))
        app.config["TESTING"] = True
        return app

    return make


def _pending_ttl(app, event_id: str) -> int:
    title, token = event_id.split("~")
    return redis.Redis.from_url(app.config["SETTINGS"].redis_url).ttl(app.extensions["store"].keys.pending(title, token))


def test_attribution_window_is_the_pending_decisions_ttl(env_app):
    default = env_app()
    event = default.test_client().get(f"/artwork?profile=p1&title={TITLE}").get_json()["event_id"]
    assert 590 <= _pending_ttl(default, event) <= 600  # 10 minutes by default
    app = env_app(ATTRIBUTION_WINDOW_S="37")
    event = app.test_client().get(f"/artwork?profile=p1&title={TITLE}").get_json()["event_id"]
    assert 30 <= _pending_ttl(app, event) <= 37


def test_max_batch_titles_caps_a_request(env_app):
    client = env_app(MAX_BATCH_TITLES="2").test_client()
    assert client.get(f"/artwork?profile=p&title={TITLE}&title={TITLE}").status_code == 200
    assert client.get(f"/artwork?profile=p&title={TITLE}&title={TITLE}&title={TITLE}").status_code == 400
    default = env_app().test_client()
    assert default.get("/artwork?profile=p&" + "&".join([f"title={TITLE}"] * 50)).status_code == 200
    assert default.get("/artwork?profile=p&" + "&".join([f"title={TITLE}"] * 51)).status_code == 400


def test_max_body_bytes_limits_bodies(env_app):
    body = json.dumps({"event_id": f"{TITLE}~{'0' * 32}", "pad": "x" * 300})
    assert env_app(MAX_BODY_BYTES="200").test_client().post("/reward", data=body).status_code == 413
    assert env_app().test_client().post("/reward", data=body).status_code == 404  # 64 KB by default


def test_cors_origins_lists_the_allowed_origins(env_app):
    client = env_app(CORS_ORIGINS="https://a.example, https://b.example").test_client()
    url = f"/artwork?profile=p&title={TITLE}"
    assert client.get(url, headers={"Origin": "https://b.example"}).headers["Access-Control-Allow-Origin"] == "https://b.example"
    assert "Access-Control-Allow-Origin" not in client.get(url, headers={"Origin": "https://c.example"}).headers
    assert env_app().test_client().get(url, headers={"Origin": "https://c.example"}).headers["Access-Control-Allow-Origin"] == "*"


def test_admin_token_enables_admin_calls(env_app):
    body = {"segment": "low"}
    assert env_app().test_client().put("/profiles/p1", json=body, headers={"Authorization": "Bearer x"}).status_code == 403
    client = env_app(ADMIN_TOKEN="s3cret").test_client()
    assert client.put("/profiles/p1", json=body, headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert client.get("/profiles/p1", headers={"Authorization": "Bearer s3cret"}).get_json()["segment"] == "low"


def test_ops_token_closes_ops_reads(env_app):
    for path in ("/stats", "/dashboard/data", "/metrics", "/dashboard"):
        assert env_app().test_client().get(path).status_code == 200  # open by default
    client = env_app(OPS_TOKEN="ops-secret", ADMIN_TOKEN="adm").test_client()
    for path in ("/stats", f"/stats/{TITLE}", "/dashboard/data", "/metrics", "/dashboard"):
        assert client.get(path).status_code == 401
        assert client.get(path, headers={"Authorization": "Bearer nope"}).status_code == 403
        assert client.get(path, headers={"Authorization": "Bearer ops-secret"}).status_code == 200
        assert client.get(path, headers={"Authorization": "Bearer adm"}).status_code == 200
    assert client.get("/dashboard?token=ops-secret").status_code == 200
    assert client.get("/dashboard/data?token=ops-secret").status_code == 200
    assert client.get("/stats?token=ops-secret").status_code == 401  # query tokens: the dashboard only
    assert client.get(f"/artwork?profile=p&title={TITLE}").status_code == 200  # serving stays open


def test_key_prefix_prefixes_every_key(env_app, redis_client):
    prefix = "kp" + uuid.uuid4().hex[:8]
    env_app(KEY_PREFIX=prefix).test_client().get(f"/artwork?profile=p1&title={TITLE}")
    keys = [k.decode() for k in redis_client.scan_iter(match=f"{prefix}:*", count=1000)]
    assert any(k.endswith(":arms") for k in keys) and all(k.startswith(f"{prefix}:") for k in keys)


def test_load_catalog_and_catalog_path(env_app, tmp_path):
    assert TITLE in {t["id"] for t in env_app().test_client().get("/catalog").get_json()["titles"]}
    assert env_app(LOAD_CATALOG="0").test_client().get("/catalog").get_json()["titles"] == []
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"titles": [{"id": "only-one", "artworks": [{"id": "a"}]}]}))
    assert [t["id"] for t in env_app(CATALOG_PATH=str(path)).test_client().get("/catalog").get_json()["titles"]] == ["only-one"]


def test_stats_cache_s_is_how_stale_stats_may_be(env_app):
    def impressions_after_one_more(client) -> tuple[int, int]:
        before = client.get(f"/stats/{TITLE}").get_json()["impressions"]
        client.get(f"/artwork?profile=p1&title={TITLE}")
        return before, client.get(f"/stats/{TITLE}").get_json()["impressions"]

    assert impressions_after_one_more(env_app(STATS_CACHE_S="0").test_client()) == (0, 1)
    assert impressions_after_one_more(env_app(STATS_CACHE_S="600").test_client()) == (0, 0)


def test_recent_traffic_minutes_is_the_recent_share_window(env_app, redis_client):
    def recent_after_old_traffic(app) -> int:
        keys = app.extensions["store"].keys
        old_bucket = int(time.time() // 60) - 10
        # 7 impressions made 10 minutes ago: none at that minute's start, 7 since
        redis_client.hset(keys.traffic(TITLE, old_bucket), "|", 0)
        redis_client.hset(keys.arms(TITLE), "n|new|str-1-closeup", 7)
        app.test_client().get(f"/artwork?profile=p1&title={TITLE}")
        return app.test_client().get(f"/stats/{TITLE}").get_json()["recent_decisions"]

    assert recent_after_old_traffic(env_app()) == 1  # 5 minutes by default: the old minute is out
    assert recent_after_old_traffic(env_app(RECENT_TRAFFIC_MINUTES="15")) == 8


def test_ts_uniform_mix_floors_thompson_probabilities(env_app):
    app = env_app(TS_UNIFORM_MIX="0.4")
    k = len(app.extensions["engine"].catalog.get()[TITLE].artworks)
    probs = [a["ts_probability"] for a in app.test_client().get(f"/stats/{TITLE}").get_json()["artworks"]]
    assert min(probs) >= 0.4 / k - 1e-12 and sum(probs) == pytest.approx(1.0)


def test_rng_seed_makes_choices_reproducible(env_app):
    def artworks(app) -> list[str]:
        client = app.test_client()
        return [client.get(f"/artwork?profile=p{i}&title={TITLE}").get_json()["artwork"] for i in range(30)]

    assert artworks(env_app(RNG_SEED="5")) == artworks(env_app(RNG_SEED="5"))


def test_redis_embedded_needs_no_server(env_app):
    app = env_app(REDIS_EMBEDDED="1", REDIS_URL="redis://127.0.0.1:1/0")
    r = app.test_client().get(f"/artwork?profile=p1&title={TITLE}")
    assert r.status_code == 200 and r.get_json()["fallback"] is False


def test_decision_log_max_age_must_exceed_the_window():
    from service.config import ConfigError

    with pytest.raises(ConfigError, match="DECISION_LOG_MAX_AGE_S"):
        load_settings({"ATTRIBUTION_WINDOW_S": "3600", "DECISION_LOG_MAX_AGE_S": "600"})


def test_recent_traffic_minutes_is_bounded_by_the_history_kept():
    from service.config import ConfigError

    assert load_settings({"RECENT_TRAFFIC_MINUTES": "2880"}).recent_traffic_minutes == 2880
    with pytest.raises(ConfigError, match="RECENT_TRAFFIC_MINUTES"):
        load_settings({"RECENT_TRAFFIC_MINUTES": "2881"})
