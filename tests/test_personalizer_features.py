"""Personalizer featurization: our VW text has exactly the features VW's own ``--dsjson`` parser
finds in the same event logged as Personalizer's dsjson (namespaces, hashes and values)."""

from __future__ import annotations

import json
import re

import pytest
import vowpalwabbit

from service.personalizer.features import Action, action_json, action_line, context_json, shared_line, slot_object

CONTEXT = [
    {"user": {"profileType": "AnonymousUser", "latLong": [47.6, -122.1], "age": 31, "vip": True, "churned": False,
              "_private": "x", "device": {"os": "ios", "mobile": True}, "none": None},
     "top": "level", "score": 2.5},
    {"weather": "Sunny", "history": [{"genre": "drama"}, {"genre": "comedy"}]},
]
ACTIONS = [
    Action("NewsArticle", ({"type": "News", "words": 350},)),
    Action("SportsArticle", ({"type": "Sports"}, {"meta": {"editor": "ann", "ratio": 0.75}})),
    Action("EntertainmentArticle", ()),
]


_ITEM = re.compile(r"(?P<ns>[^^\t]+)\^(?P<name>[^\t]*):(?P<hash>\d+):(?P<value>[^:\t]+):[^\t]*")


def _features(capfd, args: str, data: str) -> list[set[tuple[str, int, float]]]:
    """Per action example: (namespace, feature hash, value) of every feature VW's audit prints
    (its own features and the shared ones it carries; interactions left out).

    The hash mixes in the namespace's full name, so equal sets mean equal namespaces too. (An
    anonymous array feature is named ``[0]`` by the JSON parser and ``""`` by the text parser:
    names are not compared, hashes are.)"""
    capfd.readouterr()
    ws = vowpalwabbit.Workspace(f"{args} --cb_explore_adf --audit --quiet")
    try:
        examples = ws.parse(data)
        ws.learn(examples)  # labelled: VW's dsjson parser returns only the shared example of an unlabelled event
        ws.finish_example(examples)
    finally:
        ws.finish()
    out = []
    for line in capfd.readouterr().out.splitlines():
        if line.startswith("\t"):
            items = [m for m in _ITEM.finditer(line) if "*" not in m.group(0)]
            feats = {(m["ns"], int(m["hash"]), round(float(m["value"]), 4)) for m in items}
            # an action's line (the shared one only has Constant); learning audits the labelled one twice
            if any(ns == "i" for ns, _h, _v in feats) and feats not in out:
                out.append(feats)
    return out


def _dsjson(context, actions, extra=None) -> str:
    return json.dumps({"EventId": "e", "a": [1], "p": [1.0], "_label_cost": 0, "_label_probability": 1.0,
                       "_label_Action": 1, "_labelIndex": 0,
                       "c": {**context_json(context, extra), "_multi": [action_json(a) for a in actions]}})


@pytest.mark.parametrize("extra", [None, slot_object("hero", ({"size": "large", "rank": 1},))])
def test_text_features_equal_vw_dsjson_parser_features(capfd, extra):
    from_json = _features(capfd, "--dsjson", _dsjson(CONTEXT, ACTIONS, extra))
    lines = [shared_line(CONTEXT, extra), *(action_line(a) for a in ACTIONS)]
    lines[1] = f"0:0:1.0 {lines[1]}"
    from_text = _features(capfd, "", "\n".join(lines))
    assert from_text == from_json
    assert len(from_json) == len(ACTIONS)
    # The documented rules, spot-checked on VW's own parse of the dsjson:
    first = {(ns, v) for ns, _h, v in from_json[0]}
    assert {ns for ns, _v in first} == {"FromUrl", "user", "device", "latLong", "history", "i", "j"}
    assert ("latLong", 47.6) in first and ("latLong", -122.1) in first  # numeric array: indexed features
    assert ("user", 31.0) in first and ("FromUrl", 2.5) in first and ("j", 350.0) in first  # numbers keep their value
    assert {ns for ns, _h, _v in from_json[1]} - {ns for ns, _v in first} == {"meta"}  # a nested action object
    assert len(from_json[2]) == 14 + (3 if extra else 0)  # false, null and "_" keys add nothing


def test_unsafe_characters_become_underscores():
    # VW text cannot carry whitespace, "|" or ":" in a name; the dsjson parser would keep them.
    assert action_line(Action("Entertainment Article", ())) == "|i constant:1 idEntertainment_Article"


def test_documented_rules_on_one_object():
    line = shared_line([{"a": "x", "n": 3, "t": True, "f": False, "_skip": 1, "z": None, "ns": {"k": "v"}}])
    assert line == "shared |FromUrl ax n:3 t |ns kv"
    assert action_line(Action("id 1", ({"c": "red"},))) == "|i constant:1 idid_1 |j cred"
