"""Structured output: the exact check an answer must pass, and bad schemas refused up front."""

from __future__ import annotations

import pytest

from router.api.bodies import parse_request
from router.errors import APIError
from router.output_format import InvalidSchema, OutputFormat
from router.policy.model import LimitsSpec

PERSON = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer", "maximum": 30}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


def test_json_object_needs_an_object() -> None:
    output = OutputFormat.of("json_object", None)
    assert output.check('{"a": 1}') is None
    assert output.check(" [1, 2] ") == "not a JSON object"
    assert output.check('{"a": ') == "not JSON"
    assert output.check("  ") == "empty"


def test_json_schema_names_the_first_violation() -> None:
    output = OutputFormat.of("json_schema", PERSON)
    assert output.check('{"name": "Ann", "age": 30}') is None
    assert output.check('{"name": "Ann", "age": 31}') == "age: 31 is greater than the maximum of 30"
    assert output.check('{"name": "Ann"}') == "(root): 'age' is a required property"
    assert output.check('{"name": "Ann", "age": 3, "x": 1}') is not None
    long = OutputFormat.of("json_schema", {"enum": ["x" * 500]}).check('"y"')
    assert long is not None and len(long) == 160 and long.endswith("...")


def test_an_invalid_schema_is_refused() -> None:
    with pytest.raises(InvalidSchema, match="is not valid"):
        OutputFormat.of("json_schema", {"type": "objekt"})


def chat(response_format: object) -> dict[str, object]:
    return {
        "model": "auto",
        "messages": [{"role": "user", "content": "hi"}],
        "response_format": response_format,
    }


def test_requests_carry_their_output_format() -> None:
    named = {"type": "json_schema", "json_schema": {"name": "person", "schema": PERSON}}
    parsed = parse_request(chat(named), LimitsSpec(), chat=True)
    assert parsed.params.output == OutputFormat("json_schema", PERSON)
    assert parse_request(chat({"type": "text"}), LimitsSpec(), chat=True).params.output is None
    loose = parse_request(chat({"type": "json_object"}), LimitsSpec(), chat=True)
    assert loose.params.output == OutputFormat("json_object", None)


def test_a_bad_schema_is_openais_400_naming_the_param() -> None:
    bad = {"type": "json_schema", "json_schema": {"name": "p", "schema": {"type": 5}}}
    with pytest.raises(APIError) as error:
        parse_request(chat(bad), LimitsSpec(), chat=True)
    assert error.value.status == 400
    assert error.value.param == "response_format.json_schema.schema"
    assert "is not a valid JSON Schema" in error.value.message
