"""The Personalizer-compatible routes in the service's OpenAPI document (``service.openapi``).

Bodies, answers and status codes as ``service.personalizer.api`` serves them (Personalizer's REST
specifications'); the same operations under each prefix of ``PREFIXES``. Errors are
Personalizer's ``{"error": {"code", "message", "target"?}}``.
"""

from __future__ import annotations

from service.personalizer.api import KEY_HEADER, PREFIXES
from service.personalizer.configuration import AGGREGATIONS, LEARNING_MODES
from service.personalizer.errors import PersonalizerError
from service.personalizer.parsing import MAX_ACTIONS, MAX_ID, MAX_SLOTS

PZ_ERROR = PersonalizerError.body_schema()
PZ_ID = {"type": "string", "minLength": 1, "maxLength": MAX_ID}
FEATURES = {"type": "array", "nullable": True, "items": {"type": "object"}, "description": "feature objects (featurized as Personalizer's)"}
ACTION = {"type": "object", "required": ["id"], "properties": {"id": PZ_ID, "features": FEATURES}}
EVENT_ID = {"type": "string", "pattern": f"^[^\\x00-\\x1f\\x7f-\\x9f]{{1,{MAX_ID}}}$", "description": "printable"}
RANK_COMMON = {
    "contextFeatures": FEATURES,
    "actions": {"type": "array", "items": ACTION, "minItems": 1, "maxItems": MAX_ACTIONS, "description": "distinct ids"},
    "eventId": {**EVENT_ID, "nullable": True, "description": "client-chosen: a retry gets the same answer (default: generated)"},
    "deferActivation": {"type": "boolean", "nullable": True, "description": "learned only if activated within the reward wait time"},
}
RANK_REQUEST = {
    "type": "object",
    "required": ["actions"],
    "properties": {**RANK_COMMON, "excludedActions": {"type": "array", "nullable": True, "items": PZ_ID}},
}
SLOT = {
    "type": "object",
    "required": ["id"],
    "properties": {"id": PZ_ID, "features": FEATURES, "excludedActions": {"type": "array", "nullable": True, "items": PZ_ID},
                   "baselineAction": {**PZ_ID, "nullable": True}},
}
MULTISLOT_REQUEST = {
    "type": "object",
    "required": ["actions", "slots"],
    "properties": {**RANK_COMMON, "slots": {"type": "array", "items": SLOT, "minItems": 1, "maxItems": MAX_SLOTS}},
}
RANK_RESPONSE = {
    "type": "object",
    "required": ["ranking", "eventId", "rewardActionId"],
    "properties": {
        "ranking": {"type": "array", "items": {"type": "object", "required": ["id", "probability"],
                                               "properties": {"id": {"type": "string"}, "probability": {"type": "number", "minimum": 0, "maximum": 1}}}},
        "eventId": {"type": "string"},
        "rewardActionId": {"type": "string"},
    },
}
MULTISLOT_RESPONSE = {
    "type": "object",
    "required": ["eventId", "slots"],
    "properties": {
        "eventId": {"type": "string"},
        "slots": {"type": "array", "items": {"type": "object", "required": ["id", "rewardActionId"],
                                             "properties": {"id": {"type": "string"}, "rewardActionId": {"type": "string"}}}},
    },
}
REWARD_VALUE = {"type": "number", "minimum": -1, "maximum": 1}
DURATION = {"type": "string", "description": "ISO 8601 duration, e.g. PT10M"}
# A PUT changes the fields it gives; an absent or null field keeps its value (configuration.py).
SERVICE_CONFIGURATION = {
    "type": "object",
    "properties": {name: {**schema, "nullable": True} for name, schema in {
        "rewardWaitTime": {**DURATION, "description": "PT5S to P2D"},
        "defaultReward": REWARD_VALUE,
        "rewardAggregation": {"type": "string", "enum": list(AGGREGATIONS)},
        "explorationPercentage": {"type": "number", "minimum": 0, "maximum": 1},
        "modelExportFrequency": {**DURATION, "description": "PT1S to P2D"},
        "learningMode": {"type": "string", "enum": list(LEARNING_MODES)},
        "logRetentionDays": {"type": "integer", "minimum": -1, "maximum": 3650},
    }.items()},
}
POLICY = {
    "type": "object",
    "required": ["name", "arguments"],
    "properties": {"name": PZ_ID, "arguments": {"type": "string", "description": "VW arguments including --cb_explore_adf"}},
}

# The key, as a migrated client sends it. Without PERSONALIZER_API_KEY, rank, rewards and reads
# are open (said in the scheme's description, not as an empty alternative: the fuzz test runs
# with a key, so that a request without one must be refused); writes always need a credential,
# and the admin bearer token works wherever the key does.
_OPEN = _WRITE = {"security": [{"subscriptionKey": []}]}


def _err(description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PersonalizerError"}}}}


def _json(schema: dict, description: str = "OK") -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _body(schema: dict) -> dict:
    return {"required": True, "content": {"application/json": {"schema": schema}}}


_ERRORS = {
    "400": _err("malformed body or parameter (Personalizer's limits: 50 actions, 50 slots, ids of 256 characters)"),
    "401": _err(f"PERSONALIZER_API_KEY is set and the {KEY_HEADER} header is missing or wrong"),
    "503": _err("Redis unreachable (the SDKs retry)"),
}
_WRITE_ERRORS = {**_ERRORS, "403": _err("no credential is configured: writes need PERSONALIZER_API_KEY or ADMIN_TOKEN")}
_NO_CONTENT = {"204": {"description": "done"}}
_EVENT = [{"name": "eventId", "in": "path", "required": True, "schema": EVENT_ID}]
_EVENT_ERRORS = {**_ERRORS, "404": _err("no such route: an eventId with a line break")}
_MODEL = {"description": "the VW model", "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}


def _operations() -> dict[str, dict]:
    """Path (after the prefix) -> operations."""
    return {
        "/rank": {"post": {"summary": "Personalizer Rank", **_OPEN, "requestBody": _body(RANK_REQUEST),
                           "responses": {"201": _json(RANK_RESPONSE, "ranked"), **_ERRORS}}},
        "/multislot/rank": {"post": {"summary": "Personalizer multi-slot Rank", **_OPEN, "requestBody": _body(MULTISLOT_REQUEST),
                                     "responses": {"201": _json(MULTISLOT_RESPONSE, "ranked"), **_ERRORS}}},
        "/events/{eventId}/reward": {"post": {
            "summary": "Reward an event", **_OPEN, "parameters": _EVENT,
            "requestBody": _body({"type": "object", "required": ["value"], "properties": {"value": REWARD_VALUE}}),
            "responses": {**_NO_CONTENT, **_EVENT_ERRORS}}},
        "/multislot/events/{eventId}/reward": {"post": {
            "summary": "Reward a multi-slot event", **_OPEN, "parameters": _EVENT,
            "requestBody": _body({"type": "object", "required": ["reward"], "properties": {"reward": {
                "type": "array", "minItems": 1, "maxItems": MAX_SLOTS,
                "items": {"type": "object", "required": ["slotId", "value"], "properties": {"slotId": PZ_ID, "value": REWARD_VALUE}}}}}),
            "responses": {**_NO_CONTENT, **_EVENT_ERRORS}}},
        "/events/{eventId}/activate": {"post": {"summary": "Activate a deferred event", **_OPEN, "parameters": _EVENT,
                                                "responses": {**_NO_CONTENT, **_EVENT_ERRORS}}},
        "/multislot/events/{eventId}/activate": {"post": {"summary": "Activate a deferred multi-slot event", **_OPEN,
                                                          "parameters": _EVENT, "responses": {**_NO_CONTENT, **_EVENT_ERRORS}}},
        "/configurations/service": {
            "get": {"summary": "Service configuration", **_OPEN, "responses": {"200": _json(SERVICE_CONFIGURATION), **_ERRORS}},
            "put": {"summary": "Update the service configuration (fields left out keep their value)", **_WRITE,
                    "requestBody": _body(SERVICE_CONFIGURATION), "responses": {"200": _json(SERVICE_CONFIGURATION), **_WRITE_ERRORS}},
        },
        "/configurations/policy": {
            "get": {"summary": "Learning policy (VW arguments)", **_OPEN, "responses": {"200": _json(POLICY), **_ERRORS}},
            "put": {"summary": "Set the learning policy (starts a new model)", **_WRITE, "requestBody": _body(POLICY),
                    "responses": {"200": _json(POLICY), **_WRITE_ERRORS}},
            "delete": {"summary": "Reset the learning policy to Personalizer's default", **_WRITE,
                       "responses": {"200": _json(POLICY), **_WRITE_ERRORS}},
        },
        "/model": {
            "get": {"summary": "Export the model", **_OPEN, "responses": {"200": _MODEL, **_ERRORS}},
            "put": {"summary": "Import a model", **_WRITE,
                    "requestBody": {"required": True, "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
                    "responses": {**_NO_CONTENT, **_WRITE_ERRORS}},
            "delete": {"summary": "Reset the model", **_WRITE, "responses": {**_NO_CONTENT, **_WRITE_ERRORS}},
        },
        "/model/properties": {"get": {"summary": "Model times (and Apprentice mode's agreement)", **_OPEN,
                                      "responses": {"200": _json({"type": "object"}), **_ERRORS}}},
        "/logs/properties": {"get": {"summary": "Date range of the logs", **_OPEN, "responses": {"200": _json({"type": "object"}), **_ERRORS}}},
        "/logs": {"delete": {"summary": "Delete the logs", **_WRITE, "responses": {**_NO_CONTENT, **_WRITE_ERRORS}}},
    }


def personalizer_paths() -> dict[str, dict]:
    """Every Personalizer operation under every prefix (the latest also takes ``api-version``)."""
    paths = {}
    for name, prefix in PREFIXES.items():
        for path, operations in _operations().items():
            if name == "latest":
                version = {"name": "api-version", "in": "query", "required": False,
                           "schema": {"type": "string", "example": "2022-09-01-preview"}, "description": "accepted and ignored"}
                operations = {m: {**op, "parameters": [*op.get("parameters", []), version]} for m, op in operations.items()}
            paths[prefix + path] = {m: {**op, "tags": ["personalizer"]} for m, op in operations.items()}
    return paths


SCHEMAS = {"PersonalizerError": PZ_ERROR}
SECURITY_SCHEMES = {"subscriptionKey": {"type": "apiKey", "in": "header", "name": KEY_HEADER,
                                        "description": "PERSONALIZER_API_KEY (when it is unset, rank, rewards and reads need no key); "
                                                       "the admin bearer token works too"}}
