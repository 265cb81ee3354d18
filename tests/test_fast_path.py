"""The GET /artwork WSGI front answers exactly as the Flask view it stands in for."""

from __future__ import annotations

from urllib.parse import parse_qsl

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from werkzeug.test import Client

from service.fast_path import ArtworkFastPath, _parse_query

TITLE = "stranger-lights"

QUERIES = [
    f"profile=p1&title={TITLE}",  # one title
    f"profile=p2&title={TITLE}&title=night-shift&device=tv&hour=7",  # a batch with context
    f"profile=bad!&title={TITLE}",  # 400 from validation
    "profile=p3",  # 400: no title
    "profile=p4&title=no-such-title",  # 404 raised inside the engine
    f"profile=p5&title={TITLE}&Device=tv",  # 400 from context parsing
]


def both_paths(app):
    """A client through the front, and one straight to Flask (the front bypassed)."""
    front = app.wsgi_app
    assert isinstance(front, ArtworkFastPath)
    return Client(front), Client(front.flask_wsgi)


@pytest.mark.parametrize("query", QUERIES)
@pytest.mark.parametrize("origin", [None, "https://good.example", "https://evil.example"])
def test_same_status_headers_and_body_shape_as_the_flask_view(make_app, query, origin):
    app = make_app(cors_origins=("https://good.example",))
    fast, flask = both_paths(app)
    headers = {"X-Request-ID": "req-1"} | ({"Origin": origin} if origin else {})
    a, b = fast.get(f"/artwork?{query}", headers=headers), flask.get(f"/artwork?{query}", headers=headers)
    assert a.status_code == b.status_code
    assert sorted((k, v) for k, v in a.headers.items() if k != "Content-Length") == sorted(
        (k, v) for k, v in b.headers.items() if k != "Content-Length"
    )
    body_a, body_b = a.get_json(), b.get_json()
    if a.status_code != 200:
        assert body_a == body_b  # the same error mapping
        return
    decisions_a = body_a.get("decisions", [body_a])
    decisions_b = body_b.get("decisions", [body_b])
    assert [(d["title"], d["policy"], d["fallback"], sorted(d)) for d in decisions_a] == [
        (d["title"], d["policy"], d["fallback"], sorted(d)) for d in decisions_b
    ]
    assert a.data.endswith(b"\n") and b.data.endswith(b"\n")


def test_an_unexpected_error_is_the_apps_json_500_with_its_access_line(make_app, capsys):
    import json

    app = make_app()
    app.config["PROPAGATE_EXCEPTIONS"] = False

    def broken(*_args, **_kwargs):
        raise ZeroDivisionError("boom")

    app.extensions["engine"].decide = broken
    capsys.readouterr()
    r = app.test_client().get(f"/artwork?profile=p1&title={TITLE}", headers={"X-Request-ID": "req-500"})
    assert r.status_code == 500 and r.get_json()["error"]["code"] == "internal"
    assert r.headers["X-Request-ID"] == "req-500" and r.headers["Cache-Control"] == "no-store"
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines() if line.strip()]
    access = [e for e in lines if e["logger"] == "service.access"]
    assert [(e["status"], e["path"], e["request_id"]) for e in access] == [(500, "/artwork", "req-500")]
    assert any("ZeroDivisionError" in e.get("exception", "") and e.get("request_id") == "req-500" for e in lines)


def test_other_methods_and_paths_go_to_flask(make_app):
    client = make_app().test_client()
    assert client.head(f"/artwork?profile=p1&title={TITLE}").status_code == 200
    assert client.get("/artwork/").status_code == 404


def test_an_app_wide_hook_the_front_does_not_replicate_is_refused(make_app):
    app = make_app()
    app.before_request(lambda: None)
    with pytest.raises(RuntimeError, match="before_request"):
        ArtworkFastPath(app, ("*",))


@given(st.lists(st.sampled_from(["profile", "title", "p1", "a", "", "=", "&", "%41", "+", "%zz", ";", "é"]), max_size=12))
@settings(max_examples=500, deadline=None)
def test_the_query_is_split_into_the_pairs_werkzeug_would_read(pieces):
    query = "".join(pieces)
    assert _parse_query(query) == parse_qsl(query, keep_blank_values=True, errors="werkzeug.url_quote")
