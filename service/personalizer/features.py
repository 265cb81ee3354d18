"""Personalizer featurization: a rank request's JSON as VW ``cb_explore_adf`` text and as dsjson.

The rules are those of VW's own JSON parser applied to the document Personalizer logged (its
``dsjson``), so a model learned here from text and one learned by ``vw --dsjson`` from the
exported logs (or from logs kept from the Azure service) see the same features:

- the context (``contextFeatures``, a list of objects) is logged as ``"FromUrl": [...]``: the
  objects' top-level features share the namespace ``FromUrl``;
- each action is logged as ``{"_tag": id, "i": {"constant": 1, "id": id}, "j": [features...]}``:
  an action-id feature ``id<ID>`` (and a per-action constant) in namespace ``i``, the action's
  top-level features in namespace ``j``;
- a nested object becomes its own namespace, named by its key (at any depth);
- a string is one feature, its key followed by its value (``{"weather": "Sunny"}`` ->
  ``weatherSunny``); a number is a feature named by its key with that value; ``true`` is 1;
  ``false`` and ``null`` add nothing;
- an array of numbers under a key is that namespace's anonymous features, indexed by position;
  an array of objects is each object in turn; an array of strings is one feature per string
  here, but VW's dsjson parser drops the whole event on one, so prefer ``{"tag": true, ...}``;
- keys starting with ``_`` are ignored.

VW's text format cannot carry whitespace, ``|`` or ``:`` inside a name, so those become ``_``
here (the JSON parser would keep them: such features hash differently than in logs read with
``--dsjson``). Interactions (``-q ::`` by default) are the policy's arguments.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import orjson

CONTEXT_NAMESPACE = "FromUrl"
ACTION_ID_NAMESPACE = "i"
ACTION_NAMESPACE = "j"
_UNSAFE = re.compile(r"[\s|:]")


@dataclass(frozen=True)
class Action:
    id: str
    features: tuple  # the request's feature objects, as given


def _name(text: str) -> str:
    return _UNSAFE.sub("_", text)


def _number(value: float) -> str:
    return repr(float(value)) if isinstance(value, float) else str(int(value))


def _walk(namespace: str, obj: Mapping, out: dict[str, list[str]]) -> None:
    """Features of ``obj`` into ``out[namespace]``; nested objects into their own namespaces."""
    feats = out.setdefault(namespace, [])
    for key, value in obj.items():
        if not isinstance(key, str) or key.startswith("_"):
            continue
        if isinstance(value, bool):
            if value:
                feats.append(_name(key))
        elif isinstance(value, int | float):
            if math.isfinite(value):
                feats.append(f"{_name(key)}:{_number(value)}")
        elif isinstance(value, str):
            feats.append(_name(key + value))
        elif isinstance(value, Mapping):
            _walk(key, value, out)
        elif isinstance(value, list):
            _walk_list(key, value, out)


def _walk_list(namespace: str, items: list, out: dict[str, list[str]]) -> None:
    feats = out.setdefault(namespace, [])
    for item in items:
        if isinstance(item, bool):
            continue
        if isinstance(item, int | float):
            if math.isfinite(item):
                feats.append(f":{_number(item)}")
        elif isinstance(item, str):
            feats.append(_name(item))
        elif isinstance(item, Mapping):
            _walk(namespace, item, out)


def _line(prefix: str, namespaces: dict[str, list[str]]) -> str:
    parts = [prefix] if prefix else []
    for ns, feats in namespaces.items():
        if feats:
            parts.append(f"|{_name(ns)} {' '.join(feats)}")
    return " ".join(parts) if parts else "|"


def shared_line(context: Sequence[Mapping], extra: Mapping | None = None) -> str:
    """The shared (context) line; ``extra`` (a multi-slot slot's features) is one more object."""
    out: dict[str, list[str]] = {}
    _walk_list(CONTEXT_NAMESPACE, [*context, *([extra] if extra else [])], out)
    return _line("shared", out)


# Action lines repeat across ranks (an application sends the same catalogue over and over):
# cached by id and features' JSON. A plain dict emptied when full (get/set are atomic under the GIL).
_ACTION_LINES: dict[tuple[str, bytes], str] = {}
_CACHE_MAX = 8_192


def action_line(action: Action) -> str:
    key = (action.id, orjson.dumps(action.features))
    line = _ACTION_LINES.get(key)
    if line is None:
        if len(_ACTION_LINES) >= _CACHE_MAX:
            _ACTION_LINES.clear()
        line = _ACTION_LINES[key] = _action_line(action)
    return line


def _action_line(action: Action) -> str:
    out: dict[str, list[str]] = {ACTION_ID_NAMESPACE: ["constant:1", _name("id" + action.id)]}
    _walk_list(ACTION_NAMESPACE, list(action.features), out)
    return _line("", out)


def action_json(action: Action) -> dict:
    """How an action appears in a dsjson record's ``_multi`` (the same features as ``action_line``)."""
    return {"_tag": action.id, ACTION_ID_NAMESPACE: {"constant": 1, "id": action.id},
            ACTION_NAMESPACE: list(action.features)}


def context_json(context: Sequence[Mapping], extra: Mapping | None = None) -> dict:
    return {CONTEXT_NAMESPACE: [*context, *([extra] if extra else [])]}


def slot_object(slot_id: str, features: Sequence[Mapping]) -> dict:
    """A multi-slot slot as one more context object: its id (``slotId<ID>``) and its features."""
    merged: dict = {"slotId": slot_id}
    for obj in features:
        merged.update(obj)
    return merged
