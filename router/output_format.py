"""Structured output (`response_format`): what a JSON answer must be, and the exact check.

An answer asked for as `json_object` must parse to a JSON object; one asked for as
`json_schema` must also validate against the client's schema. The cascade never accepts an
answer that fails this check on a step it may still escalate from (an exact signal next to
confidence); the local tier also generates under a llama.cpp grammar built from the schema
(router/backends/grammar.py), which the check backs up where the grammar cannot express a
constraint (`maximum`, `pattern`, ...) or the answer was cut off.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import jsonschema
import orjson
from jsonschema.exceptions import SchemaError

OutputKind = Literal["json_object", "json_schema"]
_DETAIL = 160  # characters of a validation message kept in the record


class InvalidSchema(ValueError):
    """The client's JSON Schema is not a valid schema."""


@dataclass(frozen=True, slots=True)
class OutputFormat:
    """A `response_format` other than text. `schema` is None for json_object (or a
    json_schema format sent without a schema, which any JSON object satisfies)."""

    kind: OutputKind
    schema: dict[str, Any] | None = None

    @classmethod
    def of(cls, kind: OutputKind, schema: dict[str, Any] | None) -> OutputFormat:
        """The format, its schema checked against its JSON Schema metaschema."""
        if schema is not None:
            validator = jsonschema.validators.validator_for(schema)
            try:
                validator.check_schema(schema)
            except SchemaError as exc:
                raise InvalidSchema(_short(exc.message)) from None
        return cls(kind, schema)

    def check(self, text: str) -> str | None:
        """None when `text` is what the format asks for; else why not (for the record)."""
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError:
            return "not JSON" if text.strip() else "empty"
        if self.schema is None:
            return None if isinstance(value, dict) else "not a JSON object"
        validator_type = jsonschema.validators.validator_for(self.schema)
        error = jsonschema.exceptions.best_match(validator_type(self.schema).iter_errors(value))
        if error is None:
            return None
        where = "/".join(str(part) for part in error.absolute_path)
        return _short(f"{where or '(root)'}: {error.message}")


def _short(message: str) -> str:
    return message if len(message) <= _DETAIL else message[: _DETAIL - 3] + "..."
