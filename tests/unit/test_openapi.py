"""The OpenAPI document is what the code says and covers every served path."""

from __future__ import annotations

import json
from pathlib import Path

from router.api.openapi import document
from router.server.app import create_app
from router.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def test_the_committed_document_is_the_generated_one() -> None:
    committed = json.loads((REPO / "docs/openapi.json").read_text())
    assert committed == document(), "run: cascade openapi > docs/openapi.json"


def test_every_served_path_and_method_is_documented_and_nothing_else() -> None:
    app = create_app(Settings())
    served = {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.resource is not None and route.method != "HEAD"
    }
    documented = {(method, path) for path, item in document()["paths"].items() for method in item}
    assert served == documented


def test_a_served_document_names_the_policys_models() -> None:
    schemas = document(["auto", "small"])["components"]["schemas"]
    assert schemas["ChatBody"]["properties"]["model"]["enum"] == ["auto", "small"]
    assert "enum" not in document()["components"]["schemas"]["ChatBody"]["properties"]["model"]
