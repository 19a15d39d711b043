"""Structured output: the exact check an answer must pass, and bad schemas refused up front."""

from __future__ import annotations

import pytest

from router.api.bodies import parse_request, prepare_output
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
    assert output.check('{"name": "Ann"}') == '(root): "age" is a required property'
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
    """Compiled after the request is admitted (prepare_output), not while it is parsed."""
    bad = {"type": "json_schema", "json_schema": {"name": "p", "schema": {"type": 5}}}
    parsed = parse_request(chat(bad), LimitsSpec(), chat=True)
    with pytest.raises(APIError) as error:
        prepare_output(parsed)
    assert error.value.status == 400
    assert error.value.param == "response_format.json_schema.schema"
    assert "is not a valid JSON Schema" in error.value.message


def test_patterns_run_on_a_linear_time_engine() -> None:
    """`^(a+)+$` against 'aaa...a!' takes exponential time with a backtracking engine (a
    28-character answer held the gateway 3 s); the linear-time one answers at once, and
    refuses what only a backtracking engine can run (look-around, back-references)."""
    pattern = {"type": "object", "properties": {"a": {"type": "string", "pattern": "^(a+)+$"}}}
    output = OutputFormat.of("json_schema", pattern)
    found = output.check('{"a": "' + "a" * 5000 + '!"}')
    assert found is not None and found.startswith("a: ")
    assert output.check('{"a": "aaaa"}') is None
    for backtracking in ("(?=a)a", "(a)\\1"):
        with pytest.raises(InvalidSchema):
            OutputFormat.of("json_schema", {"type": "string", "pattern": backtracking})


def test_a_remote_ref_is_never_fetched() -> None:
    with pytest.raises(InvalidSchema, match="Retrieval is disabled"):
        OutputFormat.of("json_schema", {"$ref": "http://169.254.169.254/latest/meta-data"})
