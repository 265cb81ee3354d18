"""`replay export`: the service's decision log joined with its rewards, in every format."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from replay.cli import main
from replay.export import join_records
from replay.logs import load_logs
from tests.conftest import CLUSTER

CLUSTER_ARGS = ["--cluster"] if CLUSTER else []

TITLE = "stranger-lights"


@pytest.mark.parametrize("suffix", ["jsonl", "csv", "parquet"])
def test_export_joins_rewards_and_round_trips_through_the_loader(app, redis_url, key_prefix, tmp_path, suffix, capsys):
    client = app.test_client()
    served = []
    for i in range(30):
        d = client.get(f"/artwork?profile=p{i}&title={TITLE}&device=tv").get_json()
        served.append(d)
    rewarded = {d["event_id"]: (0.5 if i % 2 else 1.0) for i, d in enumerate(served[:10])}
    for event_id, r in rewarded.items():
        assert client.post("/reward", json={"event_id": event_id, "reward": r}).status_code == 200
    out = tmp_path / f"logs.{suffix}"
    # A window of 0.001 s: every decision's window has closed, so all 30 are final.
    code = main(["export", "--redis", redis_url, "--prefix", key_prefix, "--out", str(out), "--window", "0.001", *CLUSTER_ARGS])
    assert code == 0
    assert "wrote 30 impressions (10 rewarded)" in capsys.readouterr().err
    frame = load_logs(out)
    assert len(frame) == 30
    by_id = frame.set_index("event_id")
    for d in served:
        row = by_id.loc[d["event_id"]]
        assert row["artwork"] == d["artwork"] and row["title"] == TITLE and row["profile"] == d["profile"]
        assert row["propensity"] == pytest.approx(d["propensity"])
        assert row["reward"] == rewarded.get(d["event_id"], 0.0)


def test_open_windows_are_left_out_unless_asked():
    now = 1000.0
    rec = lambda eid, ts: {"type": "decision", "record": json.dumps({"event_id": eid, "timestamp": ts, "profile": "p", "title": "t", "artwork": "a", "propensity": 0.5, "policy": "thompson", "candidates": ["a", "b"], "context": {}, "segment": "new"})}  # noqa: E731
    entries = [rec("old", 10.0), rec("fresh", 990.0), {"type": "reward", "event_id": "fresh", "reward": "1.0"}, rec("open", 995.0)]
    closed = join_records(entries, now=now, window_s=100)
    assert list(closed.frame["event_id"]) == ["old", "fresh"] and closed.still_open == 1
    assert list(closed.frame["reward"]) == [0.0, 1.0]
    everything = join_records(entries, now=now, window_s=100, include_open=True)
    assert list(everything.frame["event_id"]) == ["old", "fresh", "open"]


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--out", "x.txt"], "cannot tell the format"),
        (["--out", "x.jsonl", "--window", "0"], "--window must be positive"),
        (["--out", "x.jsonl", "--title", "bad title"], "not a valid title id"),
    ],
)
def test_export_bad_arguments(redis_url, argv, message, capsys):
    assert main(["export", "--redis", redis_url, *argv, *CLUSTER_ARGS]) == 2
    assert message in capsys.readouterr().err


def test_export_unreachable_redis(tmp_path, capsys):
    assert main(["export", "--redis", "redis://127.0.0.1:1/0", "--out", str(tmp_path / "x.jsonl")]) == 2
    assert "cannot read from Redis" in capsys.readouterr().err


def test_frame_is_sorted_by_time():
    entries = [{"type": "decision", "record": json.dumps({"event_id": f"e{i}", "timestamp": float(t), "profile": "p", "title": "t", "artwork": "a", "propensity": 1.0, "policy": "fixed", "candidates": ["a"], "context": {}, "segment": "new"})} for i, t in enumerate([5, 1, 3])]
    frame = join_records(entries, now=100.0, window_s=1).frame
    assert list(frame["timestamp"]) == sorted(frame["timestamp"]) and isinstance(frame, pd.DataFrame)
