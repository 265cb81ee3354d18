"""Schemathesis against the service's own /openapi.json, in process (WSGI) on a real Redis.

Schemathesis's fixture-based loader trips on pytest 9, so the schema is loaded at import from
``/openapi.json`` as served through a forwarding WSGI app; each test points it at its own
Flask app on the session's real Redis.

Every operation gets generated requests, valid and invalid; every answer must be no 500, of a
status the document lists, with the content type and body schema it gives. Admin calls carry
the token (and schemathesis also checks that they are refused without it); the Personalizer
routes, under each of their prefixes, carry the subscription key the test's app requires.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import positive_data_acceptance

from service.app import create_app
from service.config import load_settings
from service.personalizer.api import KEY_HEADER
from tests.conftest import ADMIN

PZ_KEY = "fuzz-personalizer-key"


class ForwardingApp:
    """A WSGI app that forwards to ``target``: the test's app, once its fixture has run."""

    def __init__(self, target: Callable) -> None:
        self.target = target

    def __call__(self, environ, start_response):
        return self.target(environ, start_response)


# Until a test runs, an in-process app (fakeredis) serves the document for loading.
APP = ForwardingApp(create_app(load_settings({}, redis_embedded=True, log_level="WARNING")))
schema = schemathesis.openapi.from_wsgi("/openapi.json", APP)
# The Personalizer operations are documented under each of their three prefixes, served by one
# blueprint (the same view functions): they are fuzzed under the newest prefix only, which keeps
# this test's time in bounds; test_personalizer_prefixes_document_the_same_operations checks the
# other two list the same operations, and the SDK tests call the v1.0 ones.
fuzzed = schema.exclude(path_regex=r"^/personalizer/v1\.")


@pytest.fixture
def fuzz_app(make_app):
    # catalog_refresh_s=0: an admin write generated in one example is seen by the next.
    app = make_app(catalog_refresh_s=0.0, personalizer_api_key=PZ_KEY)
    previous, APP.target = APP.target, app
    yield app
    APP.target = previous


@fuzzed.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_openapi_document(fuzz_app, case):
    # Not positive_data_acceptance: the service has rules JSON Schema cannot state, across
    # fields or state (a title's default and ab.weights name its artworks, the event must exist);
    # every rule on a single value or key is in the document (it passes that check otherwise).
    # The Personalizer routes with their own credential, the key, which the app requires: the
    # generated value is replaced by the right one, and a case left without it (a negative one)
    # stays without it.
    headers = ADMIN
    if case.path.startswith("/personalizer"):
        headers = {KEY_HEADER: PZ_KEY} if KEY_HEADER in (case.headers or {}) else {}
    case.call_and_validate(headers=headers, excluded_checks=[positive_data_acceptance])


def test_the_document_states_the_rules_the_code_enforces():
    """Patterns in /openapi.json are the code's own (a rule changed in one place fails here)."""
    from service import api
    from service.ids import ID_PATTERN
    from service.openapi import openapi_document

    doc = openapi_document()
    assert doc["openapi"].startswith("3.1")
    batch = doc["components"]["schemas"]["BatchRequest"]
    context = batch["properties"]["context"]
    assert context["propertyNames"]["pattern"] == f"^{api._CONTEXT_NAME.pattern}$"
    assert context["additionalProperties"]["oneOf"][0]["pattern"] == f"^{api.CONTEXT_VALUE.pattern}$"
    assert context["properties"]["hour"]["oneOf"][1]["pattern"] == f"^({api.HOUR.pattern})$"
    assert context["maxProperties"] == api._MAX_CONTEXT
    assert re.compile(batch["properties"]["profile"]["pattern"][1:-1]).pattern.replace("\\", "") == ID_PATTERN.pattern.replace("\\", "")
    profile = doc["components"]["schemas"]["Profile"]
    assert profile["properties"]["affinities"]["propertyNames"]["pattern"] == "^[A-Za-z0-9_.:-]{1,64}$"
    assert doc["paths"]["/profiles/{profile}"]["get"]["security"] == [{"bearer": []}]
    assert "post" in doc["paths"]["/artwork"]


def test_personalizer_prefixes_document_the_same_operations():
    from service.openapi import openapi_document
    from service.personalizer.api import PREFIXES

    paths = openapi_document()["paths"]
    by_prefix = {
        prefix: {(p[len(prefix):], m) for p, ops in paths.items() if p.startswith(prefix + "/") and p.count("/v1.") == prefix.count("/v1.") for m in ops}
        for prefix in PREFIXES.values()
    }
    # ...and exactly the routes the blueprint serves
    app = create_app(load_settings({}, redis_embedded=True, log_level="WARNING"))
    served = {
        (rule.rule[len("/personalizer"):].replace("<path:event_id>", "{eventId}"), method.lower())
        for rule in app.url_map.iter_rules() if rule.endpoint.startswith("personalizer_latest.")
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }
    assert ("/rank", "post") in served and by_prefix["/personalizer"] == served
    assert all(ops == served for ops in by_prefix.values())
