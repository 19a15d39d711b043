"""Embeddings from the local model (`embeddings: true`): a second llama.cpp context on the
same weights answers /v1/embeddings through the openai SDK (base64, as the SDK asks, and
floats); what it cannot serve (other dimensions) goes to the next tier of the route."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import openai
import pytest

from tests.support.cascade import Cascade, StartCascade
from tests.support.processes import ServerProcess
from tests.support.surface import local_then_capable

TEXTS = ["The cat sat on the mat.", "A feline rested on the rug.", "Stock markets fell sharply."]


@pytest.fixture(scope="module")
def cascade(
    start_cascade: StartCascade, start_fake_upstream: Callable[..., ServerProcess]
) -> Cascade:
    policy = local_then_capable(start_fake_upstream(), small="{type: llama_cpp, embeddings: true}")
    return start_cascade(policy)


# Not given: the SDK asks for base64 and decodes it itself.
@pytest.mark.parametrize("encoding", [openai.NOT_GIVEN, "float"])
def test_the_local_model_embeds(client: openai.OpenAI, cascade: Cascade, encoding: Any) -> None:
    raw = client.embeddings.with_raw_response.create(
        model="auto", input=TEXTS, encoding_format=encoding
    )
    answer = raw.parse()
    vectors = np.array([item.embedding for item in answer.data])
    assert vectors.shape == (3, 576)  # SmolLM2-135M's hidden size
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    similar, unrelated = vectors[0] @ vectors[1], vectors[0] @ vectors[2]
    assert similar > unrelated
    assert raw.headers["x-cascade-tier"] == "small"
    record = cascade.record(raw.headers["x-request-id"])
    attempt = record["attempts"][0]
    assert (attempt["tier"], attempt["outcome"], attempt["local"]) == ("small", "accepted", True)
    assert attempt["prompt_tokens"] == answer.usage.prompt_tokens > 0


def test_dimensions_it_does_not_have_go_to_the_next_tier(
    client: openai.OpenAI, cascade: Cascade
) -> None:
    raw = client.embeddings.with_raw_response.create(model="auto", input="text", dimensions=4)
    assert len(raw.parse().data[0].embedding) == 4
    record = cascade.record(raw.headers["x-request-id"])
    assert [(a["tier"], a["outcome"]) for a in record["attempts"]] == [
        ("small", "error"),
        ("large", "accepted"),
    ]
    assert record["attempts"][0]["error"] == "tier 'small' embeds in 576 dimensions, not 4"


def test_an_input_longer_than_its_context_is_a_400_when_no_tier_takes_it(
    client: openai.OpenAI,
) -> None:
    with pytest.raises(openai.BadRequestError) as error:
        client.embeddings.create(model="small", input="word " * 5000)
    body: Any = error.value.body
    assert body["code"] == "context_length_exceeded" and body["param"] == "input"
