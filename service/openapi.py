"""The service's OpenAPI 3 description, served at ``/openapi.json`` (and fuzzed by tests)."""

from __future__ import annotations

from service.catalog import REWARD_AGGREGATIONS
from service.errors import ServiceError
from service.personalizer import openapi as personalizer

ID = {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,128}$"}
NULLABLE_STR = {"type": "string", "nullable": True}
EVENT_ID = {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,128}~[0-9a-f]{32}$", "description": "an event_id returned by /artwork"}
CONTEXT_VALUE = {"type": "string", "pattern": "^[^\\x00-\\x1f\\x7f-\\x9f]{1,64}$", "description": "1-64 characters, no control characters"}
CONTEXT_NAME = {"type": "string", "pattern": "^[a-z][a-z0-9_]{0,31}$"}
SIGNAL = {"type": "string", "pattern": "^[a-z][a-z0-9_]{0,31}$", "description": "a reward signal name"}  # catalog.SIGNAL
HOUR = {"oneOf": [{"type": "integer", "minimum": 0, "maximum": 23}, {"type": "string", "pattern": "^([01]?[0-9]|2[0-3])$"}]}

ERROR = ServiceError.body_schema()
DECISION = {
    "type": "object",
    "required": ["profile", "title", "artwork", "event_id", "propensity", "policy", "fallback"],
    "properties": {
        "profile": {"type": "string"},
        "title": {"type": "string"},
        "artwork": {"type": "string"},
        "event_id": {**NULLABLE_STR, "description": "null on a fallback answer"},
        "propensity": {"type": "number", "nullable": True, "minimum": 0, "maximum": 1},
        "policy": {"type": "string", "enum": ["thompson", "vw", "ab", "fixed"]},
        "fallback": {"type": "boolean"},
    },
}
TAG = {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,64}$"}
ARTWORK = {
    "type": "object",
    "required": ["id"],
    "additionalProperties": False,
    "properties": {"id": ID, "tags": {"type": "array", "items": TAG, "maxItems": 32}},
}
TITLE = {
    "type": "object",
    "required": ["artworks"],
    "additionalProperties": False,
    "description": "Artwork ids are distinct; `default` (default: the first artwork) is one of them.",
    "properties": {
        "id": {**ID, "description": "optional in a PUT body; when given, the title in the path"},
        "artworks": {"type": "array", "items": ARTWORK, "minItems": 1, "maxItems": 32},
        "default": ID,
        "policy": {"type": "string", "enum": ["thompson", "vw", "ab", "fixed"]},
        "reward_aggregation": {"type": "string", "enum": list(REWARD_AGGREGATIONS), "default": "earliest",
                               "description": "how several rewards of one decision combine (sum: clipped to 1)"},
        "half_life_s": {"type": "number", "anyOf": [{"const": 0}, {"minimum": 1, "maximum": 1e9}], "default": 0,
                        "description": "counters that forget (discounted Thompson sampling): seconds after which an observation counts half; 0 (never forget) or >= 1"},
        "sticky_s": {"type": "integer", "minimum": 0, "maximum": 2592000, "default": 0,
                     "description": "seconds a profile keeps the artwork of its first decision (repeats logged with its propensity and context.repeat_of); 0: off"},
        "reward_signal": {**SIGNAL, "default": "click", "description": "the signal the bandit learns from"},
        "guardrails": {"type": "array", "items": SIGNAL, "maxItems": 8, "default": ["play"],
                       "description": "signals tracked, not learned from (/stats: rates, play-through, clickbait flag)"},
        "salt": {"type": "string", "nullable": True, "minLength": 1, "maxLength": 128, "writeOnly": True,
                 "description": "secret salt of the A/B hash (default: random, kept across edits; never shown)"},
        "ab": {
            "type": "object",
            "nullable": True,
            "properties": {
                "salt": {"type": "string", "nullable": True, "minLength": 1, "maxLength": 128, "writeOnly": True, "description": "default: the title's secret salt"},
                "weights": {
                    "type": "object",
                    "description": "artwork id (one of the title's artworks) -> weight (some weight positive)",
                    "propertyNames": ID,
                    "not": {"additionalProperties": {"const": 0}},  # some weight is positive
                    "additionalProperties": {"type": "number", "minimum": 0, "maximum": 1e9},
                },
            },
        },
    },
}
PROFILE = {
    "type": "object",
    "additionalProperties": False,
    "description": "null is the same as leaving a field out",
    "properties": {
        "segment": {"type": "string", "nullable": True, "enum": ["new", "low", "regular", "power", None]},
        "tenure_days": {"type": "number", "nullable": True, "minimum": 0, "maximum": 1e6},
        "weekly_hours": {"type": "number", "nullable": True, "minimum": 0, "maximum": 168},
        "affinities": {
            "type": "object",
            "maxProperties": 64,
            "description": "genre -> affinity",
            "propertyNames": TAG,
            "additionalProperties": {"type": "number", "minimum": 0, "maximum": 1},
        },
    },
}

BATCH_REQUEST = {
    "type": "object",
    "required": ["profile", "titles"],
    "additionalProperties": False,
    "properties": {
        "profile": ID,
        "titles": {"type": "array", "items": ID, "minItems": 1, "maxItems": 50},
        "context": {
            "type": "object",
            "maxProperties": 16,
            "description": "feature name -> value (a string, or an integer taken as its decimal text, at most 64 characters)",
            "propertyNames": CONTEXT_NAME,
            "properties": {"hour": HOUR},
            "additionalProperties": {"oneOf": [CONTEXT_VALUE, {"type": "integer", "minimum": -(2**63), "maximum": 2**64 - 1}]},
        },
        "defer_activation": {"type": "boolean", "default": False, "description": "count the decisions only once POST /activate reports them displayed"},
    },
}


def _err(description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}


_CONTRIBUTION = {
    "type": "object",
    "properties": {
        "feature": {"type": "string", "description": "VW audit name: namespace^name (U profile, C request context, A artwork), interactions joined by *, or Constant"},
        "value": {"type": "number"},
        "weight": {"type": "number", "description": "the model's weight, in reward units"},
        "contribution": {"type": "number", "description": "value x weight"},
    },
}
EXPLANATION = {
    "type": "object",
    "properties": {
        "profile": {"type": "string"}, "title": {"type": "string"}, "policy": {"type": "string"},
        "segment": {"type": "string"}, "features": {"type": ["object", "null"]},
        "reward_signal": {"type": "string"}, "half_life_s": {"type": ["number", "null"]}, "as_of": {"type": "number"},
        "model_version": {"type": "integer", "description": "vw titles: the model that scored (0: none yet, uniform)"},
        "vw_features": {"type": "object", "description": "vw titles: the named features the model was given"},
        "artworks": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "artwork": {"type": "string"},
                    "impressions": {"type": "number"},
                    "posterior_mean": {"type": "number"},
                    "ci95": {"type": "array", "items": {"type": "number"}},
                    "probability_best": {"type": "number"},
                    "propensity": {"type": ["number", "null"]},
                    "vw_score": {"type": ["number", "null"], "description": "vw titles: the model's predicted reward for this artwork (null before a model)"},
                    "vw_contributions": {"type": "array", "items": _CONTRIBUTION, "description": "vw titles: the 5 largest feature contributions; all contributions sum to vw_score"},
                },
            },
        },
    },
}


def _ok(schema: dict, description: str = "OK") -> dict:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


# Ops reads are open unless OPS_TOKEN is set (then its token or the admin token).
OPS_READ = {"security": [{}, {"bearer": []}]}
OPS_ERRORS = {"401": _err("OPS_TOKEN is set and no bearer token was sent"), "403": _err("wrong token")}
TOKEN_PARAM = {"name": "token", "in": "query", "required": False, "schema": {"type": "string"}, "description": "the ops token, for a browser opening the page"}
ADMIN_ERRORS = {"400": _err("malformed body"), "401": _err("no bearer token"), "403": _err("wrong token"), "503": _err("Redis unreachable")}


def _v31(node: object) -> object:
    """OpenAPI 3.1 (JSON Schema 2020-12, which has ``propertyNames``): ``nullable`` becomes a
    "null" type. The schemas above are written once, in the 3.0 style."""
    if isinstance(node, list):
        return [_v31(v) for v in node]
    if not isinstance(node, dict):
        return node
    out = {k: _v31(v) for k, v in node.items() if k != "nullable"}
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


def openapi_document() -> dict:
    return _v31(_document())  # type: ignore[return-value]


def _document() -> dict:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Artwork personalization service",
            "version": "0.1.0",
            "description": "Chooses the artwork each profile sees for each title (Thompson sampling, VW contextual "
            "bandit, fixed A/B split or a pinned artwork), logs every decision with its propensity and takes rewards.",
        },
        "paths": {
            "/artwork": {
                "get": {
                    "summary": "Choose artworks for a profile and one or more titles",
                    "parameters": [
                        {"name": "profile", "in": "query", "required": True, "schema": ID},
                        {
                            "name": "title",
                            "in": "query",
                            "required": True,
                            "schema": {"type": "array", "items": ID, "minItems": 1, "maxItems": 50},
                            "style": "form",
                            "explode": True,
                        },
                        {"name": "device", "in": "query", "required": False, "schema": CONTEXT_VALUE},
                        {"name": "country", "in": "query", "required": False, "schema": CONTEXT_VALUE},
                        {"name": "hour", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 0, "maximum": 23}},
                        {"name": "defer_activation", "in": "query", "required": False, "schema": {"type": "integer", "enum": [0, 1], "default": 0},
                         "description": "1: the decisions count (impressions, log, learning, rewards) only once POST /activate reports them displayed"},
                    ],
                    "responses": {
                        "200": _ok(
                            {
                                "oneOf": [
                                    {"$ref": "#/components/schemas/Decision"},
                                    {
                                        "type": "object",
                                        "required": ["profile", "decisions"],
                                        "properties": {
                                            "profile": {"type": "string"},
                                            "decisions": {"type": "array", "items": {"$ref": "#/components/schemas/Decision"}},
                                        },
                                    },
                                ]
                            },
                            "one decision (one title) or a batch (several titles, in request order); "
                            "when Redis is unreachable the default artwork with fallback=true",
                        ),
                        "400": _err("missing, repeated or malformed profile; missing or malformed title; more than "
                                    "16 context parameters, a repeated one, a name not matching ^[a-z][a-z0-9_]{0,31}$, or a "
                                    "value that is not 1-64 printable characters"),
                        "404": _err("unknown title"),
                    },
                },
                "post": {
                    "summary": "The batch call of GET /artwork as a JSON body (for pages whose query would be too long)",
                    "requestBody": {"required": True, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/BatchRequest"}}}},
                    "responses": {
                        "200": _ok(
                            {
                                "type": "object",
                                "required": ["profile", "decisions"],
                                "properties": {"profile": {"type": "string"}, "decisions": {"type": "array", "items": {"$ref": "#/components/schemas/Decision"}}},
                            },
                            "one decision per title, in request order (fallback answers when Redis is unreachable)",
                        ),
                        "400": _err("malformed body, profile, titles or context"),
                        "404": _err("unknown title"),
                        "413": _err("body too large"),
                    },
                },
            },
            "/reward": {
                "post": {
                    "summary": "Report a reward for a decision (accepted whatever the content type, for sendBeacon)",
                    "requestBody": {
                        "required": True,
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["event_id"],
                                    "properties": {
                                        "event_id": EVENT_ID,
                                        "reward": {"type": "number", "minimum": 0, "maximum": 1, "default": 1},
                                        "signal": {**SIGNAL, "description": "click, play, ...: the title's reward signal or one of its guardrails (default: its reward signal); each counts once per decision"},
                                    },
                                }
                            }
                        },
                    },
                    "responses": {
                        "200": _ok({"type": "object", "properties": {"status": {"type": "string", "enum": ["recorded", "duplicate"]}}}),
                        "400": _err("malformed body"),
                        "404": _err("unknown or expired event"),
                        "409": _err("a deferred decision not activated (POST /activate first)"),
                        "413": _err("body too large"),
                        "503": _err("Redis unreachable (Retry-After)"),
                    },
                }
            },
            "/activate": {
                "post": {
                    "summary": "Report that a deferred decision (defer_activation) was displayed: it counts from now on, once",
                    "requestBody": {"required": True, "content": {"application/json": {"schema": {
                        "type": "object", "required": ["event_id"], "properties": {"event_id": EVENT_ID}}}}},
                    "responses": {
                        "200": _ok({"type": "object", "properties": {"status": {"type": "string", "enum": ["activated", "duplicate"]}}},
                                   "activated, or a duplicate (already activated, or never deferred)"),
                        "400": _err("malformed body"),
                        "404": _err("unknown or expired event"),
                        "413": _err("body too large"),
                        "503": _err("Redis unreachable (Retry-After)"),
                    },
                }
            },
            "/stats": {"get": {"summary": "Arm statistics of every title", **OPS_READ, "responses": {"200": _ok({"type": "object"}), **OPS_ERRORS, "503": _err("Redis unreachable")}}},
            "/stats/{title}": {
                "get": {
                    "summary": "Arm statistics of one title, overall and by segment",
                    **OPS_READ,
                    "parameters": [{"name": "title", "in": "path", "required": True, "schema": ID}],
                    "responses": {"200": _ok({"type": "object"}), **OPS_ERRORS, "400": _err("malformed title"), "404": _err("unknown title"), "503": _err("Redis unreachable")},
                }
            },
            "/explain": {
                "get": {
                    "summary": "Why this artwork: policy, the profile's segment and features, per artwork its posterior (mean, 95% interval), probability of being best and the propensity a decision made now would log; for vw titles each artwork's score with its largest feature contributions by name",
                    **OPS_READ,
                    "parameters": [
                        {"name": "profile", "in": "query", "required": True, "schema": ID},
                        {"name": "title", "in": "query", "required": True, "schema": ID},
                    ],
                    "responses": {"200": _ok(EXPLANATION), **OPS_ERRORS, "400": _err("malformed profile or title"), "404": _err("unknown title"), "503": _err("Redis unreachable")},
                }
            },
            "/healthz": {"get": {"summary": "Liveness", "responses": {"200": _ok({"type": "object"})}}},
            "/readyz": {"get": {"summary": "Readiness (Redis accepts writes, catalog loaded); the body names what is not ready", "responses": {"200": _ok({"type": "object"}), "503": _ok({"type": "object"}, "not ready")}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", **OPS_READ, "responses": {**OPS_ERRORS, "200": {"description": "Prometheus text format", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
            "/dashboard": {
                "get": {
                    "summary": "Ops dashboard (HTML page polling /dashboard/data)",
                    **OPS_READ,
                    "parameters": [
                        TOKEN_PARAM,
                        {"name": "refresh", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 3600, "default": 5}, "description": "seconds between refreshes"},
                        {"name": "minutes", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 2880, "default": 60}, "description": "traffic history shown"},
                    ],
                    "responses": {"200": {"description": "HTML page", "content": {"text/html": {"schema": {"type": "string"}}}}, "400": _err("bad parameter"), **OPS_ERRORS},
                }
            },
            "/dashboard/data": {
                "get": {
                    "summary": "The dashboard's data: /stats per title plus its per-minute traffic history, and health counters",
                    **OPS_READ,
                    "parameters": [TOKEN_PARAM, {"name": "minutes", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 2880, "default": 60}}],
                    "responses": {"200": _ok({"type": "object"}), "400": _err("bad parameter"), **OPS_ERRORS, "503": _err("Redis unreachable")},
                }
            },
            "/catalog": {"get": {"summary": "Titles with their artworks, default and policy", "responses": {"200": _ok({"type": "object", "properties": {"titles": {"type": "array", "items": {"$ref": "#/components/schemas/Title"}}}})}}},
            "/catalog/{title}": {
                "parameters": [{"name": "title", "in": "path", "required": True, "schema": ID}],
                "get": {"summary": "One title", "responses": {"200": _ok({"$ref": "#/components/schemas/Title"}), "400": _err("malformed title"), "404": _err("unknown title")}},
                "put": {
                    "summary": "Create or replace a title (admin)",
                    "security": [{"bearer": []}],
                    "requestBody": {"required": True, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Title"}}}},
                    "responses": {"200": _ok({"$ref": "#/components/schemas/Title"}), "201": _ok({"$ref": "#/components/schemas/Title"}, "created"), **ADMIN_ERRORS, "413": _err("body too large")},
                },
                "delete": {"summary": "Delete a title (admin)", "security": [{"bearer": []}], "responses": {"200": _ok({"type": "object"}), "404": _err("unknown title"), **ADMIN_ERRORS}},
            },
            "/profiles/{profile}": {
                "parameters": [{"name": "profile", "in": "path", "required": True, "schema": ID}],
                "get": {"summary": "A profile's features (admin: personal data)", "security": [{"bearer": []}], "responses": {"200": _ok({"type": "object"}), **ADMIN_ERRORS, "404": _err("unknown profile")}},
                "put": {
                    "summary": "Write a profile's features (admin; written by an upstream job)",
                    "security": [{"bearer": []}],
                    "requestBody": {"required": True, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Profile"}}}},
                    "responses": {"200": _ok({"type": "object"}), **ADMIN_ERRORS, "413": _err("body too large")},
                },
            },
            **personalizer.personalizer_paths(),
        },
        "components": {
            "schemas": {"Error": ERROR, "Decision": DECISION, "Title": TITLE, "Profile": PROFILE, "BatchRequest": BATCH_REQUEST,
                        **personalizer.SCHEMAS},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}, **personalizer.SECURITY_SCHEMES},
        },
    }
