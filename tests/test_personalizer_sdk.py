"""The Personalizer-compatible surface, driven by the official SDKs (``azure-ai-personalizer``
1.0.0b1 and ``azure-cognitiveservices-personalizer`` 0.1.1) over HTTP, against a real Redis."""

from __future__ import annotations

import json
import time

import pytest
from azure.ai.personalizer import PersonalizerAdministrationClient, PersonalizerClient
from azure.cognitiveservices.personalizer import PersonalizerClient as LegacyClient
from azure.cognitiveservices.personalizer.models import ErrorResponseException, RankableAction, RankRequest
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from msrest.authentication import CognitiveServicesCredentials
from msrest.exceptions import HttpOperationError

from bandit.vw_policy import VWModel
from service.config import load_settings
from service.personalizer.configuration import ServiceConfiguration
from service.personalizer.store import PersonalizerStore
from service.trainer import Trainer
from tests.personalizer_server import API_KEY, serve

ACTIONS = [{"id": f"a{i}", "features": [{"kind": f"k{i}", "len": i}]} for i in range(4)]
CONTEXT = [{"user": {"tier": "gold"}}, {"time": "morning"}]


@pytest.fixture
def pz(make_app):
    app = make_app(personalizer_api_key=API_KEY, personalizer_refresh_s=0.0, trainer_grace_s=0.1)
    with serve(app) as url:
        cred = AzureKeyCredential(API_KEY)
        yield {
            "url": url,
            "app": app,
            "store": app.extensions["personalizer"].store,
            "client": PersonalizerClient(url, cred, retry_total=0),
            "admin": PersonalizerAdministrationClient(url, cred, retry_total=0),
            "legacy": LegacyClient(url, CognitiveServicesCredentials(API_KEY)),
        }


def log_records(store: PersonalizerStore) -> list[dict]:
    return [{k.decode(): v.decode() for k, v in fields.items()} for _id, fields in store.read_log()]


def rank_records(store, event_id):
    return [r for r in log_records(store) if r["type"] == "rank" and r["event"] == event_id]


def test_new_sdk_rank_reward_activate(pz):
    answer = pz["client"].rank({"contextFeatures": CONTEXT, "actions": ACTIONS})
    ids = [r["id"] for r in answer["ranking"]]
    assert sorted(ids) == [a["id"] for a in ACTIONS]
    assert answer["rewardActionId"] == ids[0]
    assert sum(r["probability"] for r in answer["ranking"]) == pytest.approx(1.0)
    assert all(r["probability"] == pytest.approx(0.25) for r in answer["ranking"])  # no model yet: uniform
    event = answer["eventId"]
    assert pz["client"].reward(event, {"value": 0.5}) is None
    assert pz["client"].activate(event) is None
    kinds = [(r["type"], r.get("value")) for r in log_records(pz["store"]) if r["event"] == event]
    assert kinds == [("rank", None), ("reward", "[[null,0.5]]"), ("activate", "")]


def test_legacy_sdk_rank_reward_activate(pz):
    client = pz["legacy"]
    request = RankRequest(actions=[RankableAction(id=a["id"], features=a["features"]) for a in ACTIONS],
                          context_features=CONTEXT, excluded_actions=["a1"], event_id="legacy-1")
    answer = client.rank(request)
    assert answer.event_id == "legacy-1"
    assert answer.reward_action_id in {"a0", "a2", "a3"}
    assert {r.id: r.probability for r in answer.ranking}["a1"] == 0
    client.events.reward("legacy-1", 1.0)
    client.events.activate("legacy-1")
    kinds = [r["type"] for r in log_records(pz["store"]) if r["event"] == "legacy-1"]
    assert kinds == ["rank", "reward", "activate"]


def test_excluded_actions_are_ranked_with_probability_zero_and_never_chosen(pz):
    for _ in range(40):
        answer = pz["client"].rank({"contextFeatures": CONTEXT, "actions": ACTIONS, "excludedActions": ["a0", "a2"]})
        probs = {r["id"]: r["probability"] for r in answer["ranking"]}
        assert set(probs) == {"a0", "a1", "a2", "a3"}
        assert probs["a0"] == probs["a2"] == 0
        assert probs["a1"] + probs["a3"] == pytest.approx(1.0)
        assert answer["rewardActionId"] in {"a1", "a3"}


@pytest.mark.parametrize("sdk", ["new", "legacy"])
def test_client_event_id_retry_gets_the_same_answer_and_is_logged_once(pz, sdk):
    answers = []
    for _ in range(5):
        if sdk == "new":
            answer = pz["client"].rank({"contextFeatures": CONTEXT, "actions": ACTIONS, "eventId": "retry-1"})
            answers.append((answer["rewardActionId"], [(r["id"], r["probability"]) for r in answer["ranking"]]))
        else:
            answer = pz["legacy"].rank(RankRequest(actions=[RankableAction(id=a["id"], features=a["features"]) for a in ACTIONS],
                                                   context_features=CONTEXT, event_id="retry-1"))
            answers.append((answer.reward_action_id, [(r.id, r.probability) for r in answer.ranking]))
    assert all(a == answers[0] for a in answers)
    assert len(rank_records(pz["store"], "retry-1")) == 1
    # A generated event id is new every time.
    first = pz["client"].rank({"actions": ACTIONS})["eventId"]
    assert pz["client"].rank({"actions": ACTIONS})["eventId"] != first


def _short_wait(store: PersonalizerStore, **changes) -> None:
    # Below the API's 5 s minimum, written straight to the store: the trainer's rules, not the
    # minimum wait, are what these tests check.
    store.put_service(ServiceConfiguration(reward_wait_s=0.3, model_export_s=0.0, **changes))


def _train_until_idle(pz, seconds: float = 1.5) -> Trainer:
    settings = load_settings({}, key_prefix=pz["store"].keys.prefix, trainer_grace_s=0.1)
    trainer = Trainer(settings, pz["store"].client)
    time.sleep(seconds)
    trainer.step()
    trainer.close(publish=True)
    return trainer


def test_deferred_events_are_learned_only_when_activated(pz):
    store = pz["store"]
    _short_wait(store)
    client = pz["client"]
    shown = client.rank({"contextFeatures": CONTEXT, "actions": ACTIONS, "deferActivation": True, "eventId": "shown"})
    client.rank({"contextFeatures": CONTEXT, "actions": ACTIONS, "deferActivation": True, "eventId": "not-shown"})
    client.rank({"contextFeatures": CONTEXT, "actions": ACTIONS, "eventId": "plain"})
    client.activate(shown["eventId"])
    client.reward("not-shown", {"value": 1.0})  # ignored for learning: never activated
    _train_until_idle(pz)
    model = store.load_model()
    assert model.learned == 2  # "shown" and "plain"
    assert model.data and model.version == 1


def test_rewards_aggregate_earliest_or_sum_and_default_when_none(pz):
    from service.personalizer.trainer import examples

    record = {"actions": ACTIONS[:2], "context": CONTEXT, "a": [1, 0], "p": [0.6, 0.4]}
    label = lambda text: text.split("\n")[2].split(" ", 1)[0]  # noqa: E731 - the served action's line
    assert label(examples(record, [(None, 0.25), (None, 0.5)], "earliest", 0.0)[0][0]) == "0:-0.25:0.6"
    assert label(examples(record, [(None, 0.25), (None, 0.5)], "sum", 0.0)[0][0]) == "0:-0.75:0.6"
    assert label(examples(record, [], "sum", -0.5)[0][0]) == "0:0.5:0.6"


def test_multislot_rank_reward_activate(pz):
    client = pz["client"]
    body = {
        "contextFeatures": CONTEXT, "actions": ACTIONS, "eventId": "ms-1", "deferActivation": True,
        "slots": [{"id": "hero", "features": [{"size": "large"}], "excludedActions": ["a3"], "baselineAction": "a1"},
                  {"id": "side", "features": [{"size": "small"}], "baselineAction": "a2"}],
    }
    answer = client.rank_multi_slot(body)
    assert answer["eventId"] == "ms-1"
    placed = {s["id"]: s["rewardActionId"] for s in answer["slots"]}
    assert set(placed) == {"hero", "side"} and placed["hero"] != placed["side"] and placed["hero"] != "a3"
    assert client.reward_multi_slot("ms-1", {"reward": [{"slotId": "hero", "value": 1.0}]}) is None
    assert client.activate_multi_slot("ms-1") is None
    # Apprentice: every slot gets its baseline.
    pz["admin"].update_service_configuration({**pz["admin"].get_service_configuration(), "learningMode": "Apprentice"})
    answer = client.rank_multi_slot({**body, "eventId": "ms-2"})
    assert {s["id"]: s["rewardActionId"] for s in answer["slots"]} == {"hero": "a1", "side": "a2"}
    with pytest.raises(HttpResponseError) as err:
        client.rank_multi_slot({**body, "eventId": "ms-3", "slots": body["slots"] * 3})
    assert err.value.error.code == "BadRequest"


def test_multislot_events_are_learned_one_example_per_slot(pz):
    store = pz["store"]
    _short_wait(store)
    body = {"contextFeatures": CONTEXT, "actions": ACTIONS, "eventId": "ms-learn",
            "slots": [{"id": "hero", "baselineAction": "a0"}, {"id": "side", "baselineAction": "a1"}]}
    pz["client"].rank_multi_slot(body)
    pz["client"].reward_multi_slot("ms-learn", {"reward": [{"slotId": "side", "value": 1.0}]})
    _train_until_idle(pz)
    assert store.load_model().learned == 1


def test_configuration_round_trip(pz):
    admin = pz["admin"]
    config = admin.get_service_configuration()
    assert config["rewardWaitTime"] == "PT10M" and config["learningMode"] == "Online"
    wanted = {**config, "rewardWaitTime": "PT5S", "modelExportFrequency": "PT1M", "defaultReward": -0.5,
              "rewardAggregation": "sum", "explorationPercentage": 0.3, "logRetentionDays": 30}
    updated = admin.update_service_configuration(wanted)
    again = admin.get_service_configuration()
    for key in ("rewardWaitTime", "modelExportFrequency", "defaultReward", "rewardAggregation",
                "explorationPercentage", "logRetentionDays"):
        assert updated[key] == again[key] == wanted[key], key
    # null (as the openapi document allows) keeps a field's value, like leaving it out
    kept = admin.update_service_configuration({"modelExportFrequency": None, "learningMode": "Apprentice"})
    assert kept["modelExportFrequency"] == "PT1M" and kept["learningMode"] == "Apprentice"
    policy = admin.update_policy({"name": "mine", "arguments": "--cb_explore_adf --epsilon 0.1 -q ::"})
    assert admin.get_policy() == policy == {"name": "mine", "arguments": "--cb_explore_adf --epsilon 0.1 -q ::"}
    assert admin.reset_policy()["arguments"].startswith("--cb_explore_adf --epsilon 0.2 --power_t 0")
    with pytest.raises(HttpResponseError) as err:
        admin.update_service_configuration({**config, "rewardWaitTime": "PT1S"})
    assert err.value.status_code == 400 and err.value.error.code == "BadRequest"
    assert "rewardWaitTime" in err.value.error.message
    with pytest.raises(HttpResponseError) as err:
        admin.update_policy({"name": "bad", "arguments": "--cb_explore_adf --no_such_option"})
    assert err.value.status_code == 400


def test_model_export_import(pz):
    admin = pz["admin"]
    exported = b"".join(admin.export_model())
    VWModel.from_bytes(exported).close()  # a loadable VW model even before any learning
    trained = VWModel.from_bytes(exported)
    trained.learn(["shared |FromUrl timemorning", "0:-1:0.5 |i constant:1 ida0", "|i constant:1 ida1"])
    for n in range(3_000):  # enough weights for a model larger than MAX_BODY_BYTES (64 KiB)
        trained.learn([f"shared |FromUrl u{n} v{n % 7}", f"0:-1:0.5 |i ida{n % 3}", "|i idb"])
    data = trained.to_bytes()
    trained.close()
    assert len(data) > 64 * 1024
    assert admin.import_model(data) is None
    assert b"".join(admin.export_model()) == data
    props = admin.get_model_properties()
    assert props["creationTime"] and props["lastModifiedTime"]
    # Ranks use the imported model at once (PERSONALIZER_REFRESH_S=0): eps-greedy probabilities.
    answer = pz["client"].rank({"contextFeatures": [{"time": "morning"}], "actions": [{"id": "a0", "features": []}, {"id": "a1", "features": []}]})
    assert sorted(r["probability"] for r in answer["ranking"]) == pytest.approx([0.1, 0.9])  # eps 0.2 over 2 actions
    with pytest.raises(HttpResponseError) as err:
        admin.import_model(b"not a model")
    assert err.value.status_code == 400 and err.value.error.code == "BadRequest"
    assert admin.reset_model() is None
    answer = pz["client"].rank({"actions": [{"id": "a0", "features": []}, {"id": "a1", "features": []}]})
    assert [r["probability"] for r in answer["ranking"]] == [0.5, 0.5]


def test_logs_properties_and_delete(pz):
    admin = pz["admin"]
    assert admin.get_log_properties()["dateRange"] == {}
    pz["client"].rank({"actions": ACTIONS})
    span = admin.get_log_properties()["dateRange"]
    assert span["from"] <= span["to"]
    assert admin.delete_logs() is None
    assert admin.get_log_properties()["dateRange"] == {}


def test_errors_parse_in_both_sdks(pz):
    client, legacy = pz["client"], pz["legacy"]
    with pytest.raises(HttpResponseError) as err:
        client.reward("some-event", {"value": 2})
    assert err.value.status_code == 400
    assert err.value.error.code == "BadRequest" and "between -1 and 1" in err.value.error.message
    too_many = [{"id": f"x{i}", "features": []} for i in range(51)]
    with pytest.raises(HttpResponseError) as err:
        client.rank({"actions": too_many})
    assert err.value.error.code == "BadRequest" and "at most 50 actions" in err.value.error.message
    with pytest.raises(HttpResponseError) as err:
        client.rank({"actions": [{"id": "x" * 257, "features": []}]})
    assert err.value.error.code == "BadRequest" and err.value.error.target == "actions.id"
    with pytest.raises(HttpResponseError) as err:
        client.rank({"actions": ACTIONS, "excludedActions": [a["id"] for a in ACTIONS]})
    assert err.value.error.code == "BadRequest"
    with pytest.raises(ErrorResponseException) as legacy_err:
        legacy.rank(RankRequest(actions=[RankableAction(id=f"x{i}", features=[]) for i in range(51)]))
    assert legacy_err.value.error.error.code == "BadRequest"
    assert "at most 50 actions" in legacy_err.value.error.error.message
    wrong = PersonalizerClient(pz["url"], AzureKeyCredential("wrong"), retry_total=0)
    with pytest.raises(ClientAuthenticationError) as auth:
        wrong.rank({"actions": ACTIONS})
    assert auth.value.status_code == 401 and auth.value.error.code == "Unauthorized"
    wrong_legacy = LegacyClient(pz["url"], CognitiveServicesCredentials("wrong"))
    with pytest.raises(ErrorResponseException) as legacy_auth:
        wrong_legacy.rank(RankRequest(actions=[RankableAction(id="a", features=[])]))
    assert legacy_auth.value.error.error.code == "Unauthorized"
    with pytest.raises(HttpOperationError) as legacy_activate:  # its events calls declare no error model
        wrong_legacy.events.activate("x")
    assert legacy_activate.value.response.status_code == 401


def test_configuration_writes_need_a_credential_even_without_an_api_key(make_app):
    app = make_app(personalizer_refresh_s=0.0)  # no PERSONALIZER_API_KEY; ADMIN_TOKEN is "test-token"
    with serve(app) as url:
        anyone = PersonalizerAdministrationClient(url, AzureKeyCredential("anything"), retry_total=0)
        assert anyone.get_service_configuration()["learningMode"] == "Online"  # reads are open
        with pytest.raises(ClientAuthenticationError):
            anyone.update_service_configuration({"learningMode": "Apprentice"})
        assert PersonalizerClient(url, AzureKeyCredential("anything"), retry_total=0).rank({"actions": ACTIONS})["eventId"]
        admin = PersonalizerAdministrationClient(url, AzureKeyCredential("anything"), retry_total=0,
                                                 headers={"Authorization": "Bearer test-token"})
        assert admin.update_service_configuration({"learningMode": "Apprentice"})["learningMode"] == "Apprentice"


def test_rank_answers_the_baseline_when_redis_is_down(make_app, redis_server_factory):
    server = redis_server_factory()
    app = make_app(redis_url_override=server.url, personalizer_api_key=API_KEY, personalizer_refresh_s=0.0)
    with serve(app) as url:
        client = PersonalizerClient(url, AzureKeyCredential(API_KEY), retry_total=0)
        assert client.rank({"actions": ACTIONS})["eventId"]
        server.stop()
        answer = client.rank({"actions": ACTIONS, "excludedActions": ["a0"], "eventId": "down-1"})
        assert answer["eventId"] == "down-1" and answer["rewardActionId"] == "a1"
        assert {r["id"]: r["probability"] for r in answer["ranking"]} == pytest.approx(
            {"a0": 0.0, "a1": 1 / 3, "a2": 1 / 3, "a3": 1 / 3})
        with pytest.raises(HttpResponseError) as err:
            client.reward("down-1", {"value": 1.0})
        assert err.value.status_code == 503 and err.value.error.code == "ServiceUnavailable"


def test_events_live_in_one_cluster_slot(pz):
    keys = pz["store"].keys
    tags = {k.split("{", 1)[1].split("}", 1)[0] for k in (keys.pz_config, keys.pz_model, keys.pz_log,
                                                            keys.pz_event("a{b}c"))}
    assert tags == {"pz"}


def test_apprentice_serves_the_baseline_learns_it_and_reports_agreement(pz):
    _short_wait(pz["store"], learning_mode="Apprentice")
    client = pz["client"]
    for i in range(30):
        answer = client.rank({"contextFeatures": CONTEXT, "actions": ACTIONS, "excludedActions": ["a0"], "eventId": f"ap{i}"})
        assert answer["rewardActionId"] == "a1"  # the first non-excluded action
        assert {r["id"]: r["probability"] for r in answer["ranking"]} == {"a1": 1.0, "a0": 0.0, "a2": 0.0, "a3": 0.0}
        client.reward(answer["eventId"], {"value": 1.0})
    _train_until_idle(pz)
    agreement = pz["admin"].get_model_properties()["apprenticeAgreement"]
    assert agreement["events"] == 30
    assert 0 <= agreement["agreeing"] <= 30 and agreement["rate"] == agreement["agreeing"] / 30
    assert pz["store"].load_model().learned == 30


def test_logging_only_serves_the_baseline_and_learns_nothing(pz):
    _short_wait(pz["store"], learning_mode="LoggingOnly")
    for i in range(5):
        answer = pz["client"].rank({"actions": ACTIONS, "eventId": f"lo{i}"})
        assert answer["rewardActionId"] == "a0"
        pz["client"].reward(answer["eventId"], {"value": 1.0})
    assert len([r for r in log_records(pz["store"]) if r["type"] == "rank"]) == 5
    _train_until_idle(pz)
    assert pz["store"].load_model().learned == 0


def test_rewards_after_the_wait_are_ignored(pz):
    _short_wait(pz["store"])
    pz["client"].rank({"actions": ACTIONS, "eventId": "late"})
    time.sleep(1.3)  # the event's hash expires with the wait (at least 1 s)
    assert pz["client"].reward("late", {"value": 1.0}) is None  # 204, as Personalizer answers
    assert [r["type"] for r in log_records(pz["store"]) if r["event"] == "late"] == ["rank"]


def test_malformed_bodies_are_400_with_personalizer_errors(pz):
    http = pz["app"].test_client()
    deep: dict = {}
    cursor = deep
    for _ in range(40):
        cursor["x"] = cursor = {}
    cases = [
        ('{"actions": [{"id": "a", "features": [{"n": NaN}]}]}', "JSON"),
        ("[", "JSON"),
        ('{"actions": []}', "actions"),
        ('{"actions": [{"id": "a"}], "deferActivation": "yes"}', "deferActivation"),
        ('{"actions": [{"id": "a"}, {"id": "a"}]}', "twice"),
        ('{"actions": [{"id": "a", "features": {"not": "a list"}}]}', "list of JSON objects"),
        (json.dumps({"actions": [{"id": "a", "features": [deep]}]}), "nests deeper than 32 levels"),
    ]
    for body, words in cases:
        response = http.post("/personalizer/v1.0/rank", data=body, headers={"Ocp-Apim-Subscription-Key": API_KEY})
        assert response.status_code == 400, body
        assert response.get_json()["error"]["code"] == "BadRequest" and words in response.get_json()["error"]["message"]


def test_log_retention_trims_older_events(pz):
    store = pz["store"]
    store.put_service(ServiceConfiguration(log_retention_days=1))
    now_ms = int(time.time() * 1000)
    store.client.xadd(store.keys.pz_log, {"type": "activate", "event": "old"}, id=f"{now_ms - 2 * 86_400_000}-0")
    store.client.xadd(store.keys.pz_log, {"type": "activate", "event": "recent"}, id=f"{now_ms - 3_600_000}-0")
    pz["client"].rank({"actions": ACTIONS, "eventId": "now"})
    _train_until_idle(pz, seconds=0)
    assert [r["event"] for r in log_records(store)] == ["recent", "now"]


# The Personalizer routes that write without a credential when PERSONALIZER_API_KEY is unset
# (as Personalizer's rank and events calls); every other write needs the key or the admin token.
PUBLIC_WRITES = {("POST", "/rank"), ("POST", "/multislot/rank"), ("POST", "/events/<path:event_id>/reward"),
                 ("POST", "/events/<path:event_id>/activate"), ("POST", "/multislot/events/<path:event_id>/reward"),
                 ("POST", "/multislot/events/<path:event_id>/activate")}
CREDENTIAL_WRITES = {("PUT", "/configurations/service"), ("PUT", "/configurations/policy"),
                     ("DELETE", "/configurations/policy"), ("PUT", "/model"), ("DELETE", "/model"), ("DELETE", "/logs")}


def test_every_personalizer_write_route_is_listed_and_guarded(make_app):
    app = make_app()  # no PERSONALIZER_API_KEY; ADMIN_TOKEN "test-token"
    writes = set()
    for rule in app.url_map.iter_rules():
        for prefix in ("/personalizer/v1.0", "/personalizer/v1.1-preview.3", "/personalizer"):
            if rule.rule.startswith(prefix + "/"):
                writes |= {(m, rule.rule[len(prefix):]) for m in rule.methods - {"GET", "HEAD", "OPTIONS"}}
                break
    assert writes == PUBLIC_WRITES | CREDENTIAL_WRITES
    http = app.test_client()
    for method, path in sorted(CREDENTIAL_WRITES):
        for prefix in ("/personalizer/v1.0", "/personalizer"):
            response = http.open(prefix + path, method=method, data=b"{}",
                                 headers={"Ocp-Apim-Subscription-Key": "anything", "Authorization": "Bearer wrong"})
            assert response.status_code == 401, (method, path)
            assert response.get_json()["error"]["code"] == "Unauthorized"
