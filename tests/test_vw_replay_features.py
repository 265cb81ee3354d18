"""Replay featurizes a logged decision exactly as the trainer and ``train-vw`` do.

Property: for any logged record (a ``vw`` decision's full context with profile, tags, text and
numbers, or another policy's request-only context), written to a log file and read back by
``replay``, the VW example replay builds equals the trainer's example of the same record as the
service's stream carries it (JSON), and ``train-vw``'s.
"""

from __future__ import annotations

import json

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bandit.segments import SEGMENTS
from bandit.vw_features import decision_context, logged_example, to_example
from replay.commands.train_vw import _decisions
from replay.logs import encode_logs, load_logs, write_logs
from replay.vw_replay import _examples

ids = st.text("abcdefghij-", min_size=1, max_size=6)
numbers = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False) | st.integers(-1000, 1000)
profiles = st.none() | st.fixed_dictionaries({}, optional={
    "tenure_days": st.integers(0, 5000) | st.floats(0, 5000),
    "weekly_hours": st.floats(0, 80),
    "affinities": st.dictionaries(st.sampled_from(["comedy", "action", "drama", "horror"]), st.floats(0, 1), max_size=3),
})
requests = st.dictionaries(st.sampled_from(["device", "country", "hour", "app"]), st.text("abcXYZ019 ", min_size=1, max_size=5) | numbers.map(str), max_size=4)


@st.composite
def records(draw, i: int = 0):
    candidates = draw(st.lists(ids, min_size=1, max_size=4, unique=True))
    tags = {a: draw(st.lists(st.sampled_from(["dark", "bright", "closeup-lead", "retro"]), max_size=3)) for a in candidates}
    segment = draw(st.sampled_from(SEGMENTS))
    vw = draw(st.booleans())
    context = decision_context(draw(profiles), draw(requests), segment, tags) if vw else draw(requests)
    return {"event_id": f"e{i}", "timestamp": 1_700_000_000.0 + i, "profile": "p1", "title": "t1",
            "artwork": draw(st.sampled_from(candidates)), "propensity": 0.5, "reward": float(draw(st.booleans())),
            "policy": "vw" if vw else "thompson", "candidates": candidates, "context": context, "segment": segment}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(record=records(), fmt=st.sampled_from(["jsonl", "csv", "parquet"]))
def test_replay_example_equals_the_trainers_for_the_same_record(tmp_path, record, fmt):
    import pandas as pd

    path = tmp_path / f"one.{fmt}"
    write_logs(pd.DataFrame([record]), path)
    logs = encode_logs(load_logs(path))
    (slots, replayed), = list(_examples(logs))
    assert [logs.arms[0][j] for j in slots] == record["candidates"]  # logged order
    streamed = json.loads(json.dumps(record))  # what the trainer reads from the Redis stream
    if record["policy"] == "vw":
        trainer = to_example(streamed["context"], streamed["candidates"])  # service.trainer's call for vw decisions
        assert replayed.lines() == trainer.lines()
    expected = logged_example(streamed["context"], streamed["segment"], streamed["candidates"])
    assert replayed.lines() == expected.lines()
    (offline,) = list(_decisions(load_logs(path), None))  # train-vw's rows
    assert logged_example(offline.context, offline.segment, list(offline.candidates)).lines() == replayed.lines()


def test_replayed_vw_model_sees_text_context_and_tags(tmp_path):
    """Two records differing only in device (text) or in a tag get different examples."""
    import pandas as pd

    base = {"event_id": "e0", "timestamp": 1.0, "profile": "p", "title": "t", "artwork": "a", "propensity": 0.5,
            "reward": 1.0, "policy": "vw", "candidates": ["a", "b"], "segment": "new"}
    rows = [dict(base, event_id=f"e{i}", timestamp=float(i), context=decision_context(None, {"device": d}, "new", {"a": [tag], "b": []}))
            for i, (d, tag) in enumerate([("tv", "dark"), ("mobile", "dark"), ("tv", "bright")])]
    path = tmp_path / "three.parquet"
    write_logs(pd.DataFrame(rows), path)
    examples = [ex.lines() for _, ex in _examples(encode_logs(load_logs(path)))]
    assert examples[0] != examples[1] and examples[0] != examples[2]
    assert np.all([len(e) == 3 for e in examples])
