"""Structured logs: one JSON object per line, with the request id echoed in ``X-Request-ID``."""

from __future__ import annotations

import json
import logging
import re
from datetime import datetime

import pytest

from service.config import load_settings

ACCESS_FIELDS = {"time", "level", "message", "request_id", "method", "path", "status", "duration_ms", "pid"}
GENERATED_ID = re.compile(r"[0-9a-f]{32}")


def log_lines(capsys) -> list[dict]:
    """Every stderr line since the last call, each of which must be one JSON object."""
    err = capsys.readouterr().err
    return [json.loads(line) for line in err.splitlines() if line.strip()]


@pytest.fixture
def logged_client(capsys, make_app):
    """A client whose app logs JSON to the stderr this test captures."""
    client = make_app().test_client()
    capsys.readouterr()
    return client


@pytest.mark.parametrize(
    ("method", "url", "body", "status"),
    [
        ("GET", "/artwork?profile=p1&title=stranger-lights", None, 200),
        ("GET", "/artwork?profile=bad!&title=stranger-lights", None, 400),
        ("POST", "/reward", {"reward": 1}, 400),
        ("GET", "/no/such/page", None, 404),
        ("GET", "/healthz", None, 200),
    ],
)
def test_each_request_writes_one_json_access_line(logged_client, capsys, method, url, body, status):
    r = logged_client.open(url, method=method, json=body)
    access = [e for e in log_lines(capsys) if e["logger"] == "service.access"]
    assert r.status_code == status and len(access) == 1
    line = access[0]
    assert set(line) >= ACCESS_FIELDS
    assert (line["method"], line["path"], line["status"], line["level"]) == (method, url.split("?")[0], status, "INFO")
    assert line["request_id"] == r.headers["X-Request-ID"] and GENERATED_ID.fullmatch(line["request_id"])
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
    assert datetime.fromisoformat(line["time"]).tzinfo is not None


@pytest.mark.parametrize("incoming", ["abc-123", "trace:1.2_x", "A" * 128])
def test_a_well_formed_incoming_request_id_is_kept(logged_client, capsys, incoming):
    r = logged_client.get("/healthz", headers={"X-Request-ID": incoming})
    assert r.headers["X-Request-ID"] == incoming
    assert [e["request_id"] for e in log_lines(capsys) if e["logger"] == "service.access"] == [incoming]


@pytest.mark.parametrize("incoming", ["", "has space", "A" * 129, "<script>", "-leading-dash", "é"])
def test_a_malformed_incoming_request_id_is_replaced(logged_client, incoming):
    r = logged_client.get("/healthz", headers={"X-Request-ID": incoming})
    assert GENERATED_ID.fullmatch(r.headers["X-Request-ID"])


def test_records_logged_inside_a_request_carry_its_id(capsys, make_app):
    client = make_app("redis://127.0.0.1:1/0").test_client()  # nothing listens: every decision falls back
    capsys.readouterr()
    r = client.get("/artwork?profile=p1&title=stranger-lights", headers={"X-Request-ID": "req-42"})
    assert r.get_json()["fallback"] is True
    warnings = [e for e in log_lines(capsys) if e["level"] == "WARNING"]
    assert warnings and {e["request_id"] for e in warnings} == {"req-42"}


def test_a_traceback_stays_inside_one_json_line(logged_client, capsys):
    try:
        raise ZeroDivisionError("division by zero")
    except ZeroDivisionError:
        logging.getLogger("service.test").exception("boom")
    (line,) = log_lines(capsys)
    assert line["message"] == "boom" and "ZeroDivisionError" in line["exception"] and "request_id" not in line


def test_log_format_text_writes_plain_lines(capsys, make_app):
    make_app(log_format="text")
    capsys.readouterr()
    logging.getLogger("service.test").warning("plain")
    err = capsys.readouterr().err
    assert "WARNING service.test plain" in err and not err.lstrip().startswith("{")


def test_log_format_must_be_json_or_text():
    with pytest.raises(ValueError, match="LOG_FORMAT"):
        load_settings({"LOG_FORMAT": "xml"})
