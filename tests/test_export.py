"""`replay export`: the service's decision log joined with its rewards, in every format."""

from __future__ import annotations

import json
import time

import pandas as pd
import pytest

from replay.cli import main
from replay.export import join_records
from replay.logs import load_logs
from tests.conftest import CLUSTER

CLUSTER_ARGS = ["--cluster"] if CLUSTER else []

TITLE = "stranger-lights"


def _decide(client, n, start):
    return [client.get(f"/artwork?profile=p{start + i}&title={TITLE}&device=tv").get_json() for i in range(n)]


def _reward(client, decisions, rewards):
    for d, r in zip(decisions, rewards, strict=True):
        if r:
            assert client.post("/reward", json={"event_id": d["event_id"], "reward": r}).status_code == 200


def test_export_holds_exactly_the_closed_decisions_with_their_rewards(app, redis_url, key_prefix, tmp_path, capsys):
    """Closed decisions all exported (reward 0 when none came); open ones left out, rewarded or not."""
    client = app.test_client()
    closed = _decide(client, 20, 0)
    closed_rewards = [1.0 if i % 10 < 3 else 0.0 for i in range(20)]  # true reward rate 0.3
    _reward(client, closed, closed_rewards)
    time.sleep(2.2)  # closed's windows (2 s) close; open's stay open during the export below
    fresh = _decide(client, 10, 100)
    _reward(client, fresh, [1.0] * 5 + [0.0] * 5)  # rewarded open decisions must not leak in
    out = tmp_path / "logs.jsonl"
    capsys.readouterr()
    assert main(["export", "--redis", redis_url, "--prefix", key_prefix, "--out", str(out), "--window", "2", *CLUSTER_ARGS]) == 0
    err = capsys.readouterr().err
    assert "wrote 20 impressions (6 rewarded) for 1 titles" in err and "10 left out because their attribution window is still open" in err
    frame = load_logs(out)
    assert set(frame["event_id"]) == {d["event_id"] for d in closed}
    assert frame["reward"].mean() == pytest.approx(0.3)
    truth = {d["event_id"]: r for d, r in zip(closed, closed_rewards, strict=True)}
    assert all(truth[e] == r for e, r in zip(frame["event_id"], frame["reward"], strict=True))

    everything = tmp_path / "all.jsonl"
    assert main(["export", "--redis", redis_url, "--prefix", key_prefix, "--out", str(everything), "--window", "2",
                 "--include-open", *CLUSTER_ARGS]) == 0
    err = capsys.readouterr().err
    assert "wrote 30 impressions (11 rewarded)" in err and "10 still inside their attribution window included" in err
    assert set(load_logs(everything)["event_id"]) == {d["event_id"] for d in closed + fresh}


def test_export_of_an_empty_prefix_names_the_prefixes_that_exist(app, redis_url, key_prefix, tmp_path, capsys):
    _decide(app.test_client(), 1, 0)
    out = tmp_path / "none.jsonl"
    capsys.readouterr()  # the service's access log
    assert main(["export", "--redis", redis_url, "--prefix", "nobody-here", "--out", str(out), *CLUSTER_ARGS]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: no decisions logged for prefix 'nobody-here'")
    assert key_prefix in err and not out.exists()


@pytest.mark.parametrize("suffix", ["jsonl", "csv", "parquet", "jsonl.gz"])
def test_export_joins_rewards_and_round_trips_through_the_loader(app, redis_url, key_prefix, tmp_path, suffix, capsys):
    client = app.test_client()
    served = _decide(client, 30, 0)
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
        assert row["context"]["device"] == "tv"


def test_open_windows_are_left_out_unless_asked():
    now = 1000.0
    rec = lambda eid, ts: {"type": "decision", "record": json.dumps({"event_id": eid, "timestamp": ts, "profile": "p", "title": "t", "artwork": "a", "propensity": 0.5, "policy": "thompson", "candidates": ["a", "b"], "context": {}, "segment": "new"})}  # noqa: E731
    entries = [rec("old", 10.0), rec("fresh", 990.0), {"type": "reward", "event_id": "fresh", "reward": "1.0"}, rec("open", 995.0),
               {"type": "reward", "event_id": "old", "reward": "0.5"}]
    closed = join_records(entries, now=now, window_s=100)
    assert [r["event_id"] for r in closed.rows] == ["old"] and closed.still_open == 2 and closed.rewarded == 1
    assert [r["reward"] for r in closed.rows] == [0.5]
    everything = join_records(entries, now=now, window_s=100, include_open=True)
    assert [r["event_id"] for r in everything.rows] == ["old", "fresh", "open"]
    assert [r["reward"] for r in everything.rows] == [0.5, 1.0, 0.0]


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--out", "x.txt"], "cannot tell the format"),
        (["--out", "x.jsonl", "--window", "0"], "--window must be positive"),
        (["--out", "x.jsonl", "--title", "bad title"], "not a valid title id"),
    ],
)
def test_export_bad_arguments(redis_url, argv, message, capsys):
    assert main(["export", "--redis", redis_url, *argv, *CLUSTER_ARGS]) == 1
    assert message in capsys.readouterr().err


def test_export_unreachable_redis(tmp_path, capsys):
    assert main(["export", "--redis", "redis://127.0.0.1:1/0", "--out", str(tmp_path / "x.jsonl")]) == 1
    assert "cannot read from Redis" in capsys.readouterr().err


def test_frame_is_sorted_by_time():
    entries = [{"type": "decision", "record": json.dumps({"event_id": f"e{i}", "timestamp": float(t), "profile": "p", "title": "t", "artwork": "a", "propensity": 1.0, "policy": "fixed", "candidates": ["a"], "context": {}, "segment": "new"})} for i, t in enumerate([5, 1, 3])]
    frame = join_records(entries, now=100.0, window_s=1).frame()
    assert list(frame["timestamp"]) == [1, 3, 5] and isinstance(frame, pd.DataFrame)


def test_export_partitioned_by_date_is_what_the_dask_engine_reads(app, redis_url, key_prefix, tmp_path, capsys):
    from replay.partitioned import list_partitions

    client = app.test_client()
    served = _decide(client, 12, 0)
    out = tmp_path / "days"
    code = main(["export", "--redis", redis_url, "--prefix", key_prefix, "--out", str(out), "--window", "0.001",
                 "--partition-by", "date", *CLUSTER_ARGS])
    assert code == 0
    assert "date folders" in capsys.readouterr().err
    files = list_partitions(out)
    assert files and all(f.parent.name.startswith("date=20") for f in files)
    assert sorted(e for f in files for e in load_logs(f)["event_id"]) == sorted(d["event_id"] for d in served)
    # An existing, non-empty folder is not overwritten.
    assert main(["export", "--redis", redis_url, "--prefix", key_prefix, "--out", str(out), "--window", "0.001",
                 "--partition-by", "date", *CLUSTER_ARGS]) == 1
    assert "not empty" in capsys.readouterr().err
