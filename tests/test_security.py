"""Security properties: admin auth, unforgeable rewards, body limits, no leaks in error bodies."""

from __future__ import annotations

import hmac
import secrets

import pytest
import redis

from service import ids
from service.ids import EVENT_PATTERN, new_event_id
from service.store import RedisStore
from tests.conftest import ADMIN

TITLE = "stranger-lights"
TITLE_BODY = {"artworks": [{"id": "a1", "tags": ["dark"]}, {"id": "a2"}], "default": "a1", "policy": "thompson"}
PROFILE_BODY = {"segment": "power", "tenure_days": 420}
# Every route that writes: (method, path, JSON body). test_every_write_route_is_listed keeps it whole.
ADMIN_ROUTES = [
    ("PUT", "/catalog/sec-title", TITLE_BODY),
    ("DELETE", f"/catalog/{TITLE}", None),
    ("PUT", "/profiles/sec-profile", PROFILE_BODY),
]
PUBLIC_WRITES = {("POST", "/reward"), ("POST", "/artwork"), ("POST", "/activate")}
BODY_ROUTES = [(m, p) for m, p, b in ADMIN_ROUTES if b is not None] + sorted(PUBLIC_WRITES)
SECRET_TOKEN = "adm1n-" + "s3cr3t" * 6
REDIS_PASSWORD = "hunter2-redis-password"


def route_id(route) -> str:
    return f"{route[0]} {route[1]}"


def test_every_write_route_is_listed(app):
    """A new write route must be added above (and so be covered by these tests)."""
    writes = set()
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith("/personalizer/"):  # listed and tested in tests/test_personalizer_sdk.py
            continue
        for method in rule.methods - {"GET", "HEAD", "OPTIONS"}:
            writes.add((method, rule.rule))
    listed = {(m, "/catalog/<title_id>" if p.startswith("/catalog/") else "/profiles/<profile_id>") for m, p, _ in ADMIN_ROUTES}
    assert writes == listed | PUBLIC_WRITES


@pytest.mark.parametrize("route", ADMIN_ROUTES, ids=route_id)
@pytest.mark.parametrize(
    ("headers", "status", "code"),
    [
        ({}, 401, "unauthorized"),
        ({"Authorization": ""}, 401, "unauthorized"),
        ({"Authorization": "Bearer"}, 401, "unauthorized"),
        ({"Authorization": "Bearer    "}, 401, "unauthorized"),
        ({"Authorization": "Basic dGVzdC10b2tlbjo="}, 401, "unauthorized"),
        ({"Authorization": "test-token"}, 401, "unauthorized"),
        ({"Authorization": "Bearer wrong-token"}, 403, "forbidden"),
        ({"Authorization": "Bearer test-token-and-more"}, 403, "forbidden"),
        ({"Authorization": "Bearer test-toke"}, 403, "forbidden"),
        ({"Authorization": "Bearer TEST-TOKEN"}, 403, "forbidden"),
    ],
    ids=["none", "empty", "bearer-only", "bearer-blank", "basic", "no-scheme", "wrong", "longer", "prefix", "case"],
)
def test_admin_writes_need_the_bearer_token(client, route, headers, status, code):
    method, path, body = route
    r = client.open(path, method=method, json=body, headers=headers)
    assert r.status_code == status and r.get_json()["error"]["code"] == code
    if status == 401:
        assert r.headers["WWW-Authenticate"] == "Bearer"
    # Nothing was written: the title is still served, the profile and the new title do not exist.
    assert client.get(f"/catalog/{TITLE}").status_code == 200
    assert client.get("/catalog/sec-title").status_code == 404
    assert client.get("/profiles/sec-profile", headers=ADMIN).status_code == 404


@pytest.mark.parametrize("route", ADMIN_ROUTES, ids=route_id)
def test_admin_writes_succeed_with_the_token(client, route):
    method, path, body = route
    assert client.open(path, method=method, json=body, headers=ADMIN).status_code in (200, 201)


@pytest.mark.parametrize("route", ADMIN_ROUTES, ids=route_id)
def test_no_configured_token_disables_admin_writes(make_app, route):
    client = make_app(admin_token="").test_client()
    method, path, body = route
    r = client.open(path, method=method, json=body, headers={"Authorization": "Bearer "})
    assert r.status_code == 401
    r = client.open(path, method=method, json=body, headers={"Authorization": "Bearer anything"})
    assert r.status_code == 403 and r.get_json()["error"]["code"] == "forbidden"


@pytest.mark.parametrize("route", ADMIN_ROUTES, ids=route_id)
@pytest.mark.parametrize("sent", ["wrong-token", "test-token"])
def test_token_is_compared_with_hmac_compare_digest(client, monkeypatch, route, sent):
    """Constant time by construction: the comparison is hmac.compare_digest, on bytes."""
    calls = []
    real = hmac.compare_digest

    def spy(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    method, path, body = route
    r = client.open(path, method=method, json=body, headers={"Authorization": f"Bearer {sent}"})
    assert calls == [(sent.encode(), b"test-token")]
    if sent == "wrong-token":
        assert r.status_code == 403 and r.get_json()["error"]["code"] == "forbidden"
    else:
        assert r.status_code in (200, 201)


def test_event_ids_carry_128_random_bits(client, monkeypatch):
    """Format <title>~<32 hex>, drawn from the secrets module, unique, every bit varies."""
    requested = []
    real = secrets.token_hex
    monkeypatch.setattr(ids.secrets, "token_hex", lambda n: requested.append(n) or real(n))
    served = client.get("/artwork", query_string=[("profile", "p1")] + [("title", TITLE)] * 50).get_json()
    event_ids = [d["event_id"] for d in served["decisions"]]
    assert requested == [16 * 50]  # one draw from the OS CSPRNG: 16 bytes = 128 bits per event id
    assert all(EVENT_PATTERN.fullmatch(e) and e.startswith(f"{TITLE}~") for e in event_ids)

    tokens = [new_event_id(TITLE).rsplit("~", 1)[1] for _ in range(20_000)]
    assert len(set(tokens)) == len(tokens) and all(len(t) == 32 for t in tokens)
    values = [int(t, 16) for t in tokens[:4_000]]
    ones = [sum((v >> bit) & 1 for v in values) for bit in range(128)]
    # Each bit is set in ~2,000 of 4,000 draws (sd ~32): a constant or biased bit would be far off.
    assert all(1_600 < k < 2_400 for k in ones)


@pytest.mark.parametrize(
    "forged",
    [
        f"{TITLE}~{'0' * 32}",
        f"{TITLE}~{'f' * 32}",
        "random",  # replaced by a fresh random token below
        "night-shift~{token}",  # a real token moved to another title
        "no-such-title~{token}",
    ],
)
def test_reward_for_an_event_never_served_is_404(client, forged):
    served = client.get(f"/artwork?profile=p1&title={TITLE}").get_json()
    token = served["event_id"].rsplit("~", 1)[1]
    event_id = f"{TITLE}~{secrets.token_hex(16)}" if forged == "random" else forged.format(token=token)
    r = client.post("/reward", json={"event_id": event_id})
    assert r.status_code == 404 and r.get_json()["error"]["code"] == "unknown_event"
    stats = client.get(f"/stats/{TITLE}").get_json()
    assert stats["rewards"] == 0  # nothing was counted anywhere
    assert client.post("/reward", json={"event_id": served["event_id"]}).get_json() == {"status": "recorded"}


@pytest.mark.parametrize("route", BODY_ROUTES, ids=route_id)
@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_request_bodies_are_limited(make_app, route, chunked):
    client = make_app(max_body_bytes=1024).test_client()
    method, path = route
    body = b'{"event_id": "' + b"x" * 2048 + b'"}'
    kwargs = {"data": body, "headers": {**ADMIN, "Content-Type": "application/json"}}
    if chunked:  # no Content-Length: the limit must hold while reading the stream
        kwargs["headers"]["Transfer-Encoding"] = "chunked"
        kwargs["environ_overrides"] = {"wsgi.input_terminated": True}
    r = client.open(path, method=method, **kwargs)
    assert r.status_code == 413
    assert r.get_json()["error"]["code"] == "body_too_large"
    small = client.open(path, method=method, data=b"{}", headers=ADMIN)
    assert small.status_code in (200, 400)  # under the limit the body is read and judged


def assert_no_leak(response, *secrets_: str) -> None:
    text = response.get_data(as_text=True)
    for needle in (*secrets_, "Traceback", 'File "', "redis.exceptions", "/work/", "site-packages"):
        assert needle not in text, (response.status_code, needle, text[:300])


def assert_error_shape(response) -> None:
    body = response.get_json()
    assert set(body) == {"error"} and set(body["error"]) <= {"code", "message", "field"}


@pytest.fixture
def secret_app(make_app, redis_server_factory):
    """An app whose Redis wants a password and whose admin token is a recognizable secret."""
    server = redis_server_factory()
    # Set after start: the fixture's readiness ping has no password.
    redis.Redis(port=server.port).config_set("requirepass", REDIS_PASSWORD)
    url = f"redis://:{REDIS_PASSWORD}@127.0.0.1:{server.port}/0"
    app = make_app(redis_url_override=url, admin_token=SECRET_TOKEN, catalog_refresh_s=0.0, max_body_bytes=1024)
    app.config["PROPAGATE_EXCEPTIONS"] = False  # as in production: the error handler answers
    return app, server


ERROR_REQUESTS = [
    ("GET", "/artwork?profile=p1", None, {}),
    ("GET", "/artwork?profile=bad*id&title=x", None, {}),
    ("GET", "/artwork?profile=p1&title=nope", None, {}),
    ("POST", "/reward", b"not json", {}),
    ("POST", "/reward", b'{"event_id": "x~y"}', {}),
    ("POST", "/reward", b'{"event_id": "stranger-lights~' + b"0" * 32 + b'"}', {}),
    ("POST", "/reward", b"x" * 4096, {}),
    ("PUT", "/catalog/t1", b"{}", {}),
    ("PUT", "/catalog/t1", b"{}", {"Authorization": "Bearer nope"}),
    ("PUT", "/catalog/t1", b'{"artworks": 5}', {"Authorization": f"Bearer {SECRET_TOKEN}"}),
    ("PUT", "/profiles/p1", b"[", {"Authorization": f"Bearer {SECRET_TOKEN}"}),
    ("DELETE", "/catalog/missing", None, {"Authorization": f"Bearer {SECRET_TOKEN}"}),
    ("PATCH", "/catalog/t1", b"{}", {}),
    ("GET", "/no/such/route", None, {}),
    ("GET", "/stats/unknown", None, {}),
]


@pytest.mark.parametrize("redis_up", [True, False], ids=["redis-up", "redis-down"])
def test_no_secret_or_trace_in_error_bodies(secret_app, redis_up):
    app, server = secret_app
    client = app.test_client()
    if not redis_up:
        server.stop()
    statuses = set()
    for method, path, data, headers in ERROR_REQUESTS:
        r = client.open(path, method=method, data=data, headers=headers)
        statuses.add(r.status_code)
        assert r.status_code in (400, 401, 403, 404, 405, 413, 503), (method, path, r.status_code)
        assert_error_shape(r)
        assert_no_leak(r, SECRET_TOKEN, REDIS_PASSWORD)
    for path in ("/readyz", "/stats", "/catalog", "/metrics", "/openapi.json", f"/artwork?profile=p1&title={TITLE}"):
        assert_no_leak(client.get(path), SECRET_TOKEN, REDIS_PASSWORD)
    assert statuses >= ({400, 401, 403, 404, 405, 413} | (set() if redis_up else {503}))


def test_unexpected_exception_gives_the_generic_500(secret_app, monkeypatch):
    app, _server = secret_app
    engine = app.extensions["engine"]

    def boom(*_a, **_k):
        raise RuntimeError(f"internal detail: token={SECRET_TOKEN} url=redis://:{REDIS_PASSWORD}@host")

    monkeypatch.setattr(engine, "decide", boom)
    r = app.test_client().get(f"/artwork?profile=p1&title={TITLE}")
    assert r.status_code == 500
    assert r.get_json() == {"error": {"code": "internal", "message": "internal error"}}
    assert r.headers["Content-Type"] == "application/json"
    assert_no_leak(r, SECRET_TOKEN, REDIS_PASSWORD, "internal detail", "RuntimeError")


@pytest.mark.parametrize(
    "exc",
    [
        redis.ConnectionError(f"Error connecting to redis://:{REDIS_PASSWORD}@127.0.0.1"),
        redis.TimeoutError("Timeout reading from 127.0.0.1"),
        redis.ResponseError(f"WRONGPASS {REDIS_PASSWORD}"),
        OSError("[Errno 111] Connection refused"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_store_errors_degrade_without_internals(secret_app, monkeypatch, exc):
    app, _server = secret_app
    client = app.test_client()
    served = client.get(f"/artwork?profile=p1&title={TITLE}").get_json()
    store = app.extensions["store"]

    def fail(*_a, **_k):
        raise exc

    for name, attr in vars(RedisStore).items():  # every store call fails, whatever the path
        if callable(attr) and not name.startswith("_"):
            monkeypatch.setattr(store, name, fail)
    reward = client.post("/reward", json={"event_id": served["event_id"]})
    assert reward.status_code == 503 and reward.headers["Retry-After"] == "1"
    assert reward.get_json()["error"]["code"] == "store_unavailable"
    assert_error_shape(reward)
    assert_no_leak(reward, SECRET_TOKEN, REDIS_PASSWORD, str(exc), type(exc).__name__)
    fallback = client.get(f"/artwork?profile=p1&title={TITLE}")
    assert fallback.status_code == 200 and fallback.get_json()["fallback"] is True
    assert_no_leak(fallback, SECRET_TOKEN, REDIS_PASSWORD, str(exc))


# -- privacy


def test_profile_reads_need_the_admin_token(client):
    assert client.put("/profiles/private-p", json=PROFILE_BODY, headers=ADMIN).status_code == 200
    r = client.get("/profiles/private-p")
    assert r.status_code == 401 and "segment" not in r.get_data(as_text=True)
    r = client.get("/profiles/private-p", headers={"Authorization": "Bearer wrong-token"})
    assert r.status_code == 403 and "power" not in r.get_data(as_text=True)
    r = client.get("/profiles/private-p", headers=ADMIN)
    assert r.status_code == 200 and r.get_json()["segment"] == "power"


def _served_arms(client, title: str, profiles: list[str]) -> list[str]:
    return [client.get(f"/artwork?profile={p}&title={title}").get_json()["artwork"] for p in profiles]


def test_ab_salt_is_a_secret_random_per_title_and_kept_across_edits(app, redis_client):
    from bandit.ab_assignment import ABSplit, assign

    client = app.test_client()
    body = {"artworks": [{"id": "x1"}, {"id": "x2"}, {"id": "x3"}], "policy": "ab"}
    for title in ("ab-one", "ab-two"):
        assert client.put(f"/catalog/{title}", json=body, headers=ADMIN).status_code == 201
    store = app.extensions["store"]
    salts = [store.get_title(t).salt for t in ("ab-one", "ab-two")]
    assert all(len(s) == 32 and int(s, 16) >= 0 for s in salts) and salts[0] != salts[1]
    # Never shown: not in the catalog answers, not in the write's answer.
    public = client.get("/catalog").get_data(as_text=True) + client.get("/catalog/ab-one").get_data(as_text=True)
    public += client.put("/catalog/ab-two", json=body, headers=ADMIN).get_data(as_text=True)
    assert not any(s in public for s in salts) and '"salt"' not in public

    profiles = [f"user-{i}" for i in range(120)]
    served = _served_arms(client, "ab-one", profiles)
    arms = ("x1", "x2", "x3")
    assert served == [assign(ABSplit.equal(arms, salts[0]), p).arm for p in profiles]
    # Someone who knows only the public title id cannot compute the arms (1/3 chance each).
    guessed = [assign(ABSplit.equal(arms, "ab-one"), p).arm for p in profiles]
    assert sum(a == b for a, b in zip(served, guessed, strict=True)) < 70
    # An edit (new tags, new weights) keeps the salt: nobody is reshuffled by it.
    edited = {"artworks": [{"id": "x1", "tags": ["dark"]}, {"id": "x2"}, {"id": "x3"}], "policy": "ab"}
    assert client.put("/catalog/ab-one", json=edited, headers=ADMIN).status_code == 200
    app.extensions["engine"].catalog.invalidate()
    assert store.get_title("ab-one").salt == salts[0]
    assert _served_arms(client, "ab-one", profiles) == served


def test_seeded_titles_get_secret_salts(app):
    store = app.extensions["store"]
    salts = {t: store.get_title(t).salt for t in ("stranger-lights", "night-shift")}
    assert all(len(s) == 32 for s in salts.values()) and len(set(salts.values())) == 2
