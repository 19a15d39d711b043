"""The OpenAPI 3.1 document of the served endpoints, built from the request models.

`GET /openapi.json` serves it with `model` narrowed to the active policy's routes and tiers;
`cascade openapi` prints the generic one, committed as docs/openapi.json (a test keeps it
equal to this code, another that every served path is in it).
"""

from __future__ import annotations

from typing import Any

from router.api.bodies import ChatBody, CompletionBody, EmbeddingsBody
from router.api.responses.request import ResponsesBody

_ERROR_STATUSES = {
    "400": "Invalid request (OpenAI's error body names the `param`)",
    "401": "Auth is on and the key is missing, malformed, unknown, expired or revoked",
    "403": "The key may not use this model, or the endpoint needs an admin key",
    "404": "Unknown model or path",
    "405": "Method not allowed",
    "408": "The request body did not arrive in time",
    "413": "Body larger than `limits.max_body_bytes`",
    "429": "Passed on from an upstream tier, with its Retry-After",
    "431": "Request headers too large",
    "499": "Never sent: recorded when the client left first",
    "502": "An upstream tier failed",
    "503": "Nothing left to try, or every tier saturated (Retry-After)",
    "504": "An upstream tier timed out",
}
_CASCADE_HEADERS = {
    "x-request-id": "The gateway's own id of this request (the ledger's key).",
    "x-cascade-route": "The route that served it.",
    "x-cascade-tier": "The tier that answered.",
    "x-cascade-model": "The model that answered.",
    "x-cascade-escalations": "Answers a step's acceptance (or output check) rejected, moving "
    "the request on (a tier skipped or failed is not one).",
    "x-cascade-fallbacks": "Tiers asked that failed (an error, a timeout, a full queue, not "
    "configured) and were passed over.",
    "x-cascade-degraded": "true when the answer is served below its confidence threshold.",
    "x-cascade-policy": "First 12 hex chars of the active policy's sha256.",
    "x-cascade-cache": "On a cached route: hit, miss, bypass (Cache-Control), skip (not "
    "deterministic) or error (docs/cache.md).",
    "x-cascade-reason": "Why it went where it did, `; `-separated: rule:NAME->ROUTE, "
    "budget_degraded, prerouter_skip:TIER, cache_hit, skipped:TIER:FEATURES, "
    "tier_unconfigured:TIER, failed:TIER:KIND, low_confidence:TIER V<T, invalid_output:TIER, "
    "accepted:TIER, degraded:TIER, repaired:TIER, live:TIER.",
}
_ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["message", "type", "param", "code"],
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": ["string", "null"]},
                "code": {"type": ["string", "null"]},
            },
        }
    },
}
_EMBEDDINGS = {
    "type": "object",
    "required": ["object", "data"],
    "properties": {
        "object": {"type": "string"},
        "data": {"type": "array", "items": {"type": "object"}},
        "model": {"type": "string"},
        "usage": {"type": "object"},
    },
}
# One server-sent event: `data` is a JSON chunk, an error body, or `[DONE]`.
_EVENT = {"type": "object", "required": ["data"], "properties": {"data": {"type": "string"}}}
_USAGE = {
    "type": "object",
    "required": ["prompt_tokens", "completion_tokens", "total_tokens"],
    "properties": {
        name: {"type": "integer", "minimum": 0}
        for name in ("prompt_tokens", "completion_tokens", "total_tokens")
    },
}


def _completion(chat: bool) -> dict[str, Any]:
    choice: dict[str, Any] = {
        "type": "object",
        "required": ["index", "finish_reason"],
        "properties": {"index": {"type": "integer"}, "finish_reason": {"type": "string"}},
    }
    if chat:
        choice["properties"]["message"] = {
            "type": "object",
            "required": ["role", "content"],
            "properties": {"role": {"const": "assistant"}, "content": {"type": ["string", "null"]}},
        }
    else:
        choice["properties"]["text"] = {"type": "string"}
    return {
        "type": "object",
        "required": ["id", "object", "created", "model", "choices"],
        "properties": {
            "id": {"type": "string"},
            "object": {"type": "string"},
            "created": {"type": "integer"},
            "model": {"type": "string"},
            "choices": {"type": "array", "items": choice},
            "usage": {"$ref": "#/components/schemas/Usage"},
        },
    }


_RESPONSE = {
    "type": "object",
    "required": ["id", "object", "created_at", "status", "model", "output"],
    "properties": {
        "id": {"type": "string"},
        "object": {"const": "response"},
        "created_at": {"type": "integer"},
        "status": {"enum": ["completed", "incomplete", "failed", "in_progress"]},
        "model": {"type": "string"},
        "output": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["type"],
                "properties": {"type": {"enum": ["message", "function_call"]}},
            },
        },
        "usage": {"type": ["object", "null"]},
    },
}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _errors() -> dict[str, Any]:
    error = {"$ref": "#/components/schemas/Error"}
    return {
        status: {"description": text, "content": _json(error)}
        for status, text in _ERROR_STATUSES.items()
    }


def _completion_operation(
    name: str, body: str, answer: str, summary: str, events: str = "ending in `data: [DONE]`"
) -> dict[str, Any]:
    headers = {
        name: {"description": text, "schema": {"type": "string"}}
        for name, text in _CASCADE_HEADERS.items()
    }
    return {
        "post": {
            "operationId": name,
            "summary": summary,
            "requestBody": {
                "required": True,
                "content": _json({"$ref": f"#/components/schemas/{body}"}),
            },
            "responses": {
                "200": {
                    "description": f"The answer; with `stream: true`, server-sent events {events}",
                    "headers": headers,
                    "content": {
                        **_json({"$ref": f"#/components/schemas/{answer}"}),
                        "text/event-stream": {"schema": _EVENT},
                    },
                },
                **_errors(),
            },
        }
    }


_FEEDBACK: dict[str, Any] = {
    "type": "object",
    "description": "score (0 to 1, 0.5 and above good) or label (good, bad, thumbs_up, ...)",
    "properties": {
        "request_id": {"type": "string", "description": "the answer's x-request-id"},
        "score": {"type": "number", "minimum": 0, "maximum": 1},
        "label": {"type": "string", "maxLength": 64},
        "comment": {"type": "string", "maxLength": 1000},
        "source": {"type": "string", "maxLength": 64},
    },
    "required": ["request_id"],
    "additionalProperties": False,
}


def _get(
    name: str, summary: str, content: dict[str, Any], errors: tuple[str, ...] = ()
) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": {"description": summary, "content": content}}
    for status in errors:
        responses[status] = {
            "description": _ERROR_STATUSES.get(status, "Not ready"),
            "content": _json({"type": "object"}),
        }
    return {"get": {"operationId": name, "summary": summary, "responses": responses}}


def document(models: list[str] | None = None) -> dict[str, Any]:
    """The OpenAPI document; `models` narrows `model` to those names (a served policy's)."""
    schemas: dict[str, Any] = {
        "Error": _ERROR,
        "Usage": _USAGE,
        "ChatCompletion": _completion(True),
        "TextCompletion": _completion(False),
    }
    schemas["Embeddings"] = _EMBEDDINGS
    schemas["Feedback"] = _FEEDBACK
    schemas["FeedbackBatch"] = {
        "type": "object",
        "properties": {
            "feedback": {"type": "array", "items": {"$ref": "#/components/schemas/Feedback"}}
        },
        "required": ["feedback"],
        "additionalProperties": False,
    }
    schemas["Response"] = _RESPONSE
    for model in (ChatBody, CompletionBody, EmbeddingsBody, ResponsesBody):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        if models:
            schema["properties"]["model"]["enum"] = models
        schemas[model.__name__] = schema
    anything = {"type": "object"}
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "cascade",
            "version": "1",
            "description": "OpenAI-compatible LLM routing and cascade proxy.",
        },
        "paths": {
            "/v1/chat/completions": _completion_operation(
                "chat_completions", "ChatBody", "ChatCompletion", "Chat completion, cascaded"
            ),
            "/v1/completions": _completion_operation(
                "completions", "CompletionBody", "TextCompletion", "Text completion, cascaded"
            ),
            "/v1/responses": _completion_operation(
                "responses",
                "ResponsesBody",
                "Response",
                "Responses API, translated to chat completions and cascaded",
                "typed `response.*` (`event:` and `data:`), ending in `response.completed`",
            ),
            "/v1/embeddings": {
                "post": {
                    "operationId": "embeddings",
                    "summary": "Embeddings, from the first tier of the route that serves them",
                    "requestBody": {
                        "required": True,
                        "content": _json({"$ref": "#/components/schemas/EmbeddingsBody"}),
                    },
                    "responses": {
                        "200": {
                            "description": "The upstream's answer",
                            "content": _json({"$ref": "#/components/schemas/Embeddings"}),
                        },
                        **_errors(),
                    },
                }
            },
            "/v1/feedback": {
                "post": {
                    "operationId": "feedback",
                    "summary": "An application's word on an answer, kept in the ledger",
                    "requestBody": {
                        "required": True,
                        "content": _json(
                            {
                                "oneOf": [
                                    {"$ref": "#/components/schemas/Feedback"},
                                    {"$ref": "#/components/schemas/FeedbackBatch"},
                                ]
                            }
                        ),
                    },
                    "responses": {
                        "200": {
                            "description": "The feedback stored (one item), or each item's "
                            "status: stored, forbidden (another team's), not_found (a batch)",
                            "content": _json(anything),
                        },
                        **_errors(),
                    },
                }
            },
            "/v1/models": _get("models", "Routes and tiers", _json(anything)),
            "/healthz": _get("healthz", "Alive", _json(anything)),
            "/readyz": _get("readyz", "Policy loaded; tier states", _json(anything), ("503",)),
            "/metrics": _get(
                "metrics", "Prometheus metrics", {"text/plain": {"schema": {"type": "string"}}}
            ),
            "/admin/policy": _get(
                "admin_policy",
                "The active policy, thresholds autotune set, and the last rejected change",
                _json(anything),
                ("503",),
            ),
            "/openapi.json": _get("openapi", "This document", _json(anything)),
            "/v1/spend": _get(
                "spend",
                "The caller's team's spend, limits and what is left",
                _json(anything),
                ("401", "403", "503"),
            ),
            "/admin/spend": _get(
                "admin_spend",
                "Every team's spend and limits (admin key)",
                _json(anything),
                ("401", "403", "503"),
            ),
        },
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        # Needed once any key is configured (policies/README.md#keys-and-auth); the probes
        # and this document never need one.
        "security": [{"bearer": []}, {}],
    }
