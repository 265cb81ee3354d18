"""Rank, multi-slot rank and reward bodies: parsed and checked against Personalizer's limits."""

from __future__ import annotations

from dataclasses import dataclass

from service.inputs import number
from service.personalizer.errors import BadRequest, personalizer_errors
from service.personalizer.features import Action

MAX_ACTIONS = 50
MAX_SLOTS = 50
MAX_ID = 256


@dataclass(frozen=True)
class Slot:
    id: str
    features: tuple
    excluded: frozenset[str]
    baseline: str | None


@dataclass(frozen=True)
class RankRequest:
    context: tuple  # contextFeatures objects
    actions: tuple[Action, ...]
    excluded: tuple[str, ...]
    event_id: str | None
    defer: bool
    slots: tuple[Slot, ...] = ()


def check_event_id(value: object, field: str = "eventId") -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_ID or not value.isprintable():
        raise BadRequest(f"{field} must be a string of 1-{MAX_ID} printable characters", target=field)
    return value


def _id(value: object, field: str) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_ID:
        raise BadRequest(f"{field} must be a string of 1-{MAX_ID} characters", target=field)
    return value


def _objects(value: object, field: str) -> tuple:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise BadRequest(f"{field} must be a list of JSON objects", target=field)
    return tuple(value)


def _ids(value: object, field: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise BadRequest(f"{field} must be a list of action ids", target=field)
    return tuple(_id(v, field) for v in value)


def parse_rank(body: object, multislot: bool = False) -> RankRequest:
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object (a rank request)")
    actions_raw = body.get("actions")
    if not isinstance(actions_raw, list) or not actions_raw:
        raise BadRequest("actions must be a non-empty list", target="actions")
    if len(actions_raw) > MAX_ACTIONS:
        raise BadRequest(f"at most {MAX_ACTIONS} actions per request, got {len(actions_raw)}", target="actions")
    actions, seen = [], set()
    for a in actions_raw:
        if not isinstance(a, dict):
            raise BadRequest("each action must be an object {id, features}", target="actions")
        aid = _id(a.get("id"), "actions.id")
        if aid in seen:
            raise BadRequest(f"action id {aid!r} appears twice", target="actions")
        seen.add(aid)
        actions.append(Action(aid, _objects(a.get("features"), "actions.features")))
    event_id = body.get("eventId")
    defer = body.get("deferActivation", False)
    if defer is None:
        defer = False
    if not isinstance(defer, bool):
        raise BadRequest("deferActivation must be true or false", target="deferActivation")
    request = RankRequest(
        context=_objects(body.get("contextFeatures"), "contextFeatures"),
        actions=tuple(actions),
        excluded=_ids(body.get("excludedActions"), "excludedActions"),
        event_id=None if event_id is None else check_event_id(event_id),
        defer=defer,
    )
    if not multislot:
        if all(a.id in request.excluded for a in actions):
            raise BadRequest("every action is excluded: nothing to rank", target="excludedActions")
        return request
    slots_raw = body.get("slots")
    if not isinstance(slots_raw, list) or not slots_raw:
        raise BadRequest("slots must be a non-empty list", target="slots")
    if len(slots_raw) > MAX_SLOTS:
        raise BadRequest(f"at most {MAX_SLOTS} slots per request, got {len(slots_raw)}", target="slots")
    slots, slot_ids = [], set()
    for s in slots_raw:
        if not isinstance(s, dict):
            raise BadRequest("each slot must be an object {id, features, excludedActions, baselineAction}", target="slots")
        sid = _id(s.get("id"), "slots.id")
        if sid in slot_ids:
            raise BadRequest(f"slot id {sid!r} appears twice", target="slots")
        slot_ids.add(sid)
        baseline = s.get("baselineAction")
        if baseline is not None and _id(baseline, "slots.baselineAction") not in seen:
            raise BadRequest(f"baselineAction {baseline!r} of slot {sid!r} is not one of the actions", target="slots.baselineAction")
        slots.append(Slot(sid, _objects(s.get("features"), "slots.features"),
                          frozenset(_ids(s.get("excludedActions"), "slots.excludedActions")), baseline))
    if len(slots) > len(actions):
        raise BadRequest("each action fills at most one slot: give at least as many actions as slots", target="slots")
    return RankRequest(request.context, request.actions, request.excluded, request.event_id, request.defer, tuple(slots))


def parse_reward(body: object) -> float:
    if not isinstance(body, dict) or "value" not in body:
        raise BadRequest('the body must be {"value": number}', target="value")
    return _reward(body["value"], "value")


def parse_multislot_reward(body: object) -> list[tuple[str, float]]:
    rewards = body.get("reward") if isinstance(body, dict) else None
    if not isinstance(rewards, list) or not rewards or len(rewards) > MAX_SLOTS:
        raise BadRequest(f'the body must be {{"reward": [{{"slotId", "value"}}, ...]}} with 1-{MAX_SLOTS} items', target="reward")
    out = []
    for r in rewards:
        if not isinstance(r, dict):
            raise BadRequest("each reward must be an object {slotId, value}", target="reward")
        out.append((_id(r.get("slotId"), "reward.slotId"), _reward(r.get("value"), "reward.value")))
    return out


def _reward(value: object, field: str) -> float:
    with personalizer_errors():
        return number(value, field, -1, 1)
