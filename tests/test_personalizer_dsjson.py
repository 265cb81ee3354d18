"""Personalizer logs exported as VW dsjson: VW's own parser learns them, and replay reads them."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import vowpalwabbit
from azure.ai.personalizer import PersonalizerClient
from azure.core.credentials import AzureKeyCredential

from replay.logs import LogSchemaError, load_logs
from service.personalizer.configuration import ServiceConfiguration
from service.personalizer.dsjson import main as export_main
from tests.conftest import CLUSTER
from tests.personalizer_server import API_KEY, serve

ACTIONS = [{"id": f"a{i}", "features": [{"kind": f"k{i}"}]} for i in range(3)]


@pytest.fixture
def exported(make_app, key_prefix, redis_url, tmp_path):
    app = make_app(personalizer_api_key=API_KEY, personalizer_refresh_s=0.0)
    store = app.extensions["personalizer"].store
    store.put_service(ServiceConfiguration(reward_wait_s=0.3, default_reward=0.0))  # below the API's 5 s: test only
    with serve(app) as url:
        client = PersonalizerClient(url, AzureKeyCredential(API_KEY), retry_total=0)
        answers = {}
        for i in range(6):
            body = {"contextFeatures": [{"user": {"tier": "gold" if i % 2 else "free"}}, {"hour": i}],
                    "actions": ACTIONS, "excludedActions": ["a2"] if i == 5 else [], "eventId": f"e{i}"}
            answers[f"e{i}"] = client.rank(body)
        client.reward("e1", {"value": 0.25})
        client.reward("e1", {"value": 0.5})  # earliest aggregation: 0.25 counts
        client.reward("e2", {"value": 1.0})
        client.rank({"actions": ACTIONS, "eventId": "hidden", "deferActivation": True})
        client.rank_multi_slot({"actions": ACTIONS, "eventId": "ms", "slots": [{"id": "s1", "baselineAction": "a0"},
                                                                              {"id": "s2", "baselineAction": "a1"}]})
        client.reward_multi_slot("ms", {"reward": [{"slotId": "s2", "value": 1.0}]})
    time.sleep(1.5)  # the 0.3 s wait and the exporter's 1 s grace
    out = tmp_path / "events.dsjson"
    cluster = ["--cluster"] if CLUSTER else []
    assert export_main(["--redis", redis_url, "--prefix", key_prefix, "--out", str(out), *cluster]) == 0
    return out, answers


def test_export_is_dsjson_that_vw_learns(exported):
    path, answers = exported
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    by_id = {line["EventId"]: line for line in lines}
    assert set(by_id) == {*answers, "hidden", "ms/s1", "ms/s2"}
    assert by_id["e1"]["_label_cost"] == -0.25 and by_id["e2"]["_label_cost"] == -1.0 and by_id["e3"]["_label_cost"] == 0
    for event_id, answer in answers.items():
        line = by_id[event_id]
        chosen = line["c"]["_multi"][line["_labelIndex"]]["_tag"]
        assert chosen == answer["rewardActionId"]
        served = {r["id"]: r["probability"] for r in answer["ranking"]}
        assert line["_label_probability"] == pytest.approx(served[chosen])
        assert line["_label_Action"] == line["_labelIndex"] + 1 == line["a"][0]
    assert [a["_tag"] for a in by_id["e5"]["c"]["_multi"]] == ["a0", "a1"]  # excluded actions are not candidates
    assert by_id["hidden"]["_skipLearn"] is True and by_id["hidden"]["DeferredAction"] is True
    assert by_id["ms/s2"]["_label_cost"] == -1.0 and by_id["ms/s1"]["_label_cost"] == 0
    ws = vowpalwabbit.Workspace("--dsjson --cb_explore_adf --quiet")
    try:
        for line in path.read_text().splitlines():
            examples = ws.parse(line)
            record = json.loads(line)
            # shared + actions, parsed whole; a _skipLearn event is skipped by VW (one empty example)
            assert len(examples) == (1 if record.get("_skipLearn") else 1 + len(record["c"]["_multi"])), line
            ws.learn(examples)
            ws.finish_example(examples)
    finally:
        ws.finish()


def test_replay_reads_the_export(exported, tmp_path):
    path, answers = exported
    frame = load_logs(path)
    assert set(frame["event_id"]) == {*answers, "ms/s1", "ms/s2"}  # the never-shown deferred event is left out
    row = frame.set_index("event_id").loc["e1"]
    assert row["artwork"] == answers["e1"]["rewardActionId"] and row["reward"] == 0.25
    assert row["context"] == {"user.tier": "gold", "hour": 1}
    result = subprocess.run([sys.executable, "-m", "replay", "evaluate", str(path), "--policy", "uniform", "--json"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["n"] == len(frame)


def test_replay_names_the_line_of_a_bad_dsjson_record(tmp_path):
    path = tmp_path / "bad.dsjson"
    good = {"EventId": "x", "Timestamp": "2026-01-01T00:00:00Z", "_label_cost": -1, "_label_probability": 0.5,
            "_labelIndex": 0, "c": {"_multi": [{"_tag": "a"}, {"_tag": "b"}]}}
    path.write_text(json.dumps(good) + "\n" + json.dumps({**good, "EventId": "y", "_labelIndex": 7}) + "\n")
    with pytest.raises(LogSchemaError, match="line 2.*_labelIndex"):
        load_logs(path)
