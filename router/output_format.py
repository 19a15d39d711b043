"""Structured output (`response_format`): what a JSON answer must be, and the exact check.

An answer asked for as `json_object` must parse to a JSON object; one asked for as
`json_schema` must also validate against the client's schema. The cascade never accepts an
answer that fails this check on a step it may still escalate from (an exact signal next to
confidence); the local tier also generates under a llama.cpp grammar built from the schema
(router/backends/grammar.py), which the check backs up where the grammar cannot express a
constraint (`maximum`, `pattern`, ...) or the answer was cut off.

The client's schema is hostile until checked: its shape is bounded first (router/api/
validation.py: bytes, depth, enum values, properties), then it is compiled once, by
jsonschema-rs, offline (a remote `$ref` is an error, never fetched) and with Rust's
linear-time regex engine for `pattern` (no backtracking: `^(a+)+$` costs what `^a+$` does;
look-around is refused as an invalid pattern). Compiling is deferred to `prepare()`, which
the server calls after the request is admitted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import jsonschema_rs
import orjson

OutputKind = Literal["json_object", "json_schema"]
_DETAIL = 160  # characters of a validation message kept in the record


class InvalidSchema(ValueError):
    """The client's JSON Schema is not a valid schema."""


def _compiled(schema: dict[str, Any]) -> jsonschema_rs.Validator:
    try:
        return jsonschema_rs.validator_for(
            schema, offline=True, pattern_options=jsonschema_rs.RegexOptions()
        )
    except (jsonschema_rs.ValidationError, ValueError) as exc:  # ValueError: too deep
        raise InvalidSchema(_short(str(exc).split("\n", 1)[0])) from None


@dataclass(frozen=True, slots=True)
class OutputFormat:
    """A `response_format` other than text. `schema` is None for json_object (or a
    json_schema format sent without a schema, which any JSON object satisfies)."""

    kind: OutputKind
    schema: dict[str, Any] | None = None
    # the compiled validator, once prepare() ran (not part of what the format is)
    _validator: list[jsonschema_rs.Validator] = field(
        default_factory=list, compare=False, repr=False
    )

    @classmethod
    def of(cls, kind: OutputKind, schema: dict[str, Any] | None) -> OutputFormat:
        """The format, its schema compiled (and so checked against its metaschema)."""
        found = cls(kind, schema)
        found.prepare()
        return found

    @classmethod
    def deferred(cls, kind: OutputKind, schema: dict[str, Any] | None) -> OutputFormat:
        """The format, its schema compiled later, by `prepare()` (after admission)."""
        return cls(kind, schema)

    def prepare(self) -> None:
        """Compile the schema (once): InvalidSchema when it is not a valid schema."""
        if self.schema is not None and not self._validator:
            self._validator.append(_compiled(self.schema))

    def check(self, text: str) -> str | None:
        """None when `text` is what the format asks for; else why not (for the record)."""
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError:
            return "not JSON" if text.strip() else "empty"
        if self.schema is None:
            return None if isinstance(value, dict) else "not a JSON object"
        self.prepare()
        error = next(iter(self._validator[0].iter_errors(value)), None)
        if error is None:
            return None
        where = "/".join(str(part) for part in error.instance_path)
        return _short(f"{where or '(root)'}: {error.message}")


def _short(message: str) -> str:
    return message if len(message) <= _DETAIL else message[: _DETAIL - 3] + "..."
