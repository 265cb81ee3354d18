"""Schemathesis against the service's own /openapi.json, in process (WSGI) on a real Redis.

Schemathesis's fixture-based loader trips on pytest 9, so the schema is loaded at import from
``/openapi.json`` as served through a forwarding WSGI app; each test points it at its own
Flask app on the session's real Redis.

Every operation gets generated requests, valid and invalid; every answer must be no 500, of a
status the document lists, with the content type and body schema it gives. Admin calls carry
the token (and schemathesis also checks that they are refused without it).
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
from tests.conftest import ADMIN


class ForwardingApp:
    """A WSGI app that forwards to ``target``: the test's app, once its fixture has run."""

    def __init__(self, target: Callable) -> None:
        self.target = target

    def __call__(self, environ, start_response):
        return self.target(environ, start_response)


# Until a test runs, an in-process app (fakeredis) serves the document for loading.
APP = ForwardingApp(create_app(load_settings({}, redis_embedded=True, log_level="WARNING")))
schema = schemathesis.openapi.from_wsgi("/openapi.json", APP)


@pytest.fixture
def fuzz_app(make_app):
    # catalog_refresh_s=0: an admin write generated in one example is seen by the next.
    app = make_app(catalog_refresh_s=0.0)
    previous, APP.target = APP.target, app
    yield app
    APP.target = previous


@schema.parametrize()
@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_openapi_document(fuzz_app, case):
    # Not positive_data_acceptance: the service has rules JSON Schema cannot state, across
    # fields or state (a title's default and ab.weights name its artworks, the event must exist);
    # every rule on a single value or key is in the document (it passes that check otherwise).
    case.call_and_validate(headers=ADMIN, excluded_checks=[positive_data_acceptance])


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
