"""Log loading and validation: three formats, errors that name the row and the column."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from replay.cli import main
from replay.logs import LogSchemaError, encode_logs, load_logs, validate_logs, write_logs
from replay.simulation import segmented_titles, simulate_logs

FORMATS = ["jsonl", "csv", "parquet"]


def good_rows() -> list[dict]:
    return [
        {"event_id": f"e{i}", "timestamp": 1_700_000_000 + i, "profile": f"p{i % 3}", "title": "t1",
         "artwork": "a1" if i % 2 else "a2", "propensity": 0.5, "reward": float(i % 3 == 0), "policy": "uniform",
         "candidates": ["a1", "a2"], "segment": "new"}
        for i in range(6)
    ]


def write(tmp_path, rows: list[dict], fmt: str):
    path = tmp_path / f"logs.{fmt}"
    write_logs(pd.DataFrame(rows), path)
    return path


def row_label(fmt: str, index: int) -> str:
    """How a data row (0-based) is named in messages for each format."""
    return {"jsonl": f"line {index + 1}", "csv": f"line {index + 2}", "parquet": f"row {index + 1}"}[fmt]


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_all_formats(tmp_path, fmt):
    env = segmented_titles(np.random.default_rng(0))
    frame = simulate_logs(env, np.random.default_rng(1), 500)
    loaded = load_logs(write(tmp_path, frame.to_dict("records"), fmt))
    assert list(loaded["event_id"]) == list(frame["event_id"])
    np.testing.assert_allclose(loaded["propensity"], frame["propensity"])
    np.testing.assert_allclose(loaded["timestamp"], frame["timestamp"])
    assert list(loaded["candidates"]) == [tuple(c) for c in frame["candidates"]]
    logs = encode_logs(loaded)
    assert logs.n == 500 and logs.has_candidates and logs.has_segment


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    ("column", "value", "expected"),
    [
        ("propensity", 0.0, r"must be in \(0, 1\]"),
        ("propensity", 1.5, r"must be in \(0, 1\]"),
        ("propensity", "abc", "must be a number"),
        ("reward", 1.2, r"must be in \[0, 1\]"),
        ("reward", -1.0, r"must be in \[0, 1\]"),
        ("title", "", "empty string|missing value"),  # CSV cannot tell empty from missing
        ("timestamp", "yesterday", "ISO-8601"),
        ("event_id", "e1", "duplicate"),
    ],
)
def test_bad_value_names_row_and_column(tmp_path, fmt, column, value, expected):
    rows = good_rows()
    bad_index = 4
    rows[bad_index][column] = value
    if fmt == "parquet" and isinstance(value, str) and column in ("propensity", "reward"):
        for r in rows:  # a Parquet column has one type: make the whole column text
            r[column] = str(r[column])
        rows[bad_index][column] = value
    if fmt == "parquet" and column == "timestamp":
        for r in rows:
            r[column] = str(r[column])
        rows[bad_index][column] = value
    with pytest.raises(LogSchemaError) as info:
        load_logs(write(tmp_path, rows, fmt))
    message = str(info.value)
    assert row_label(fmt, bad_index) in message
    assert f"column '{column}'" in message
    assert re.search(expected, message)


@pytest.mark.parametrize("fmt", FORMATS)
def test_missing_column_is_named(tmp_path, fmt):
    rows = [{k: v for k, v in r.items() if k != "propensity"} for r in good_rows()]
    with pytest.raises(LogSchemaError, match="column 'propensity': required column missing"):
        load_logs(write(tmp_path, rows, fmt))


def test_bad_json_line_is_named(tmp_path):
    path = tmp_path / "logs.jsonl"
    lines = [json.dumps(r) for r in good_rows()]
    lines[2] = lines[2][:-5]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(LogSchemaError, match="line 3: not valid JSON"):
        load_logs(path)


def test_logged_artwork_must_be_a_candidate(tmp_path):
    rows = good_rows()
    rows[3]["candidates"] = ["a2", "a3"]
    rows[3]["artwork"] = "a1"
    with pytest.raises(LogSchemaError, match="line 4, column 'candidates'.*not among the candidates"):
        load_logs(write(tmp_path, rows, "jsonl"))


def test_iso_and_epoch_timestamps_agree():
    rows = good_rows()[:2]
    rows[0]["timestamp"] = "2023-11-14T22:13:20Z"
    rows[1]["timestamp"] = 1_700_000_000.0
    frame = validate_logs(pd.DataFrame(rows))
    assert frame["timestamp"].tolist() == [1_700_000_000.0, 1_700_000_000.0]


def test_encode_orders_by_time_and_codes_actions():
    rows = good_rows()
    rows[0]["timestamp"], rows[5]["timestamp"] = rows[5]["timestamp"], rows[0]["timestamp"]
    logs = encode_logs(validate_logs(pd.DataFrame(rows)))
    assert logs.order.tolist() == [5, 1, 2, 3, 4, 0]
    assert logs.arms == (("a1", "a2"),)
    assert [logs.arms[0][a] for a in logs.action] == [rows[i]["artwork"] for i in logs.order]


def test_context_numbers_become_features():
    rows = good_rows()
    for i, r in enumerate(rows):
        r["context"] = {"hour": i, "device": "tv", "fresh": i % 2 == 0}
    logs = encode_logs(validate_logs(pd.DataFrame(rows)))
    assert logs.feature_names == ("hour", "fresh")
    assert logs.features.shape == (6, 2)


@pytest.mark.parametrize("fmt", FORMATS)
def test_cli_reports_schema_error_without_traceback(tmp_path, capsys, fmt):
    rows = good_rows()
    rows[2]["propensity"] = 0.0
    path = write(tmp_path, rows, fmt)
    assert main(["evaluate", str(path), "--policy", "uniform"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert row_label(fmt, 2) in err and "propensity" in err
    assert main(["check", str(path)]) == 1


def test_parquet_candidates_of_varying_length_and_missing_round_trip(tmp_path):
    """The Parquet reader keys candidate lists as integers; lists of different lengths, in
    different orders, and missing ones come back exactly as written."""
    lists = [["a", "b"], ["b", "a"], ["a", "b", "c"], None, ["c"], ["a", "b"]]
    rows = [{"event_id": f"e{i}", "timestamp": float(i), "profile": "p", "title": "t", "artwork": (c or ["a"])[0],
             "propensity": 0.5, "reward": 0.0, "candidates": c} for i, c in enumerate(lists)]
    path = tmp_path / "var.parquet"
    write_logs(pd.DataFrame(rows), path)
    got = load_logs(path)["candidates"].tolist()
    assert got == [None if c is None else tuple(c) for c in lists]
    logs = encode_logs(load_logs(path, keep_event_id=False))
    assert [logs.combo_slots[c] for c in logs.combo] == [(0, 1), (1, 0), (0, 1, 2), (0, 1, 2), (2,), (0, 1)]


def test_parquet_duplicate_event_ids_are_named_when_kept(tmp_path):
    rows = [{"event_id": "same", "timestamp": float(i), "profile": "p", "title": "t", "artwork": "a",
             "propensity": 0.5, "reward": 0.0} for i in range(2)]
    path = tmp_path / "dup.parquet"
    write_logs(pd.DataFrame(rows), path)
    with pytest.raises(LogSchemaError, match="row 2, column 'event_id': duplicate event_id 'same'"):
        load_logs(path)
    assert len(load_logs(path, keep_event_id=False)) == 2  # evaluate's reader does not read them
