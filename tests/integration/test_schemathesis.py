"""Schemathesis against a live cascade: requests generated from the OpenAPI document (valid
and invalid) never get a 5xx, and answers match the document. A few hundred cases per
operation here; bench/fuzz.py runs thousands."""

from __future__ import annotations

import os

import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from router.api.openapi import document
from tests.support.cascade import Cascade

MODELS = ["guarded", "large"]
SCHEMA = schemathesis.openapi.from_dict(document(MODELS))
EXAMPLES = int(os.environ.get("CASCADE_FUZZ_EXAMPLES", "300"))  # bench/fuzz.py: more


@SCHEMA.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.function_scoped_fixture,
    ],
)
def test_no_generated_request_gets_a_server_error(case: schemathesis.Case, served: Cascade) -> None:
    response = case.call(base_url=served.url, timeout=30)
    assert response.status_code < 500, (response.status_code, response.text[:300])
    if response.headers.get("Content-Type", "").startswith("application/json"):
        body = response.json()
        if response.status_code >= 400:
            assert set(body["error"]) == {"message", "type", "param", "code"}
    case.validate_response(
        response,
        checks=[status_code_conformance, content_type_conformance, response_schema_conformance],
    )
