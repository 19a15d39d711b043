"""The OpenAI wire: request bodies declared and validated, the endpoints' surfaces, the
renderers of answers (bodies and SSE), the OpenAPI document, and the Responses API."""
