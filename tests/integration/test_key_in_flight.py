"""A key's own `limits.max_in_flight` through a real `cascade serve`: its requests past the
cap wait their turn (all are answered, never more than the cap reach the provider at once),
while another key of the same team is not held by it."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable

import openai
import pytest

from tests.support.cascade import StartCascade
from tests.support.faults import seen
from tests.support.processes import ServerProcess

CAPPED, FREE = "sk-capped-key", "sk-free-key"


def _digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


async def _burst(url: str, key: str, count: int) -> list[str]:
    async with openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0) as client:
        answers = await asyncio.gather(
            *(
                client.chat.completions.create(
                    model="remote", messages=[{"role": "user", "content": "Hi"}], max_tokens=4
                )
                for _ in range(count)
            )
        )
    return [answer.choices[0].message.content or "" for answer in answers]


@pytest.mark.parametrize("key", [CAPPED, FREE])
def test_a_keys_requests_past_its_cap_wait_their_turn(
    start_cascade: StartCascade, start_fake_upstream: Callable[..., ServerProcess], key: str
) -> None:
    upstream = start_fake_upstream("--delay-ms", "300")  # each answer takes a while
    cascade = start_cascade(f"""
tiers:
  large: {{type: openai, api_base: "{upstream.url}/v1", model: fake}}
routes:
  remote: {{cascade: [{{tier: large}}]}}
teams:
  ops:
    keys:
      - {{sha256: {_digest(CAPPED)}, limits: {{max_in_flight: 2}}}}
      - {{sha256: {_digest(FREE)}}}
""")
    answers = asyncio.run(_burst(cascade.url, key, 6))
    assert len(answers) == 6 and all(answers)  # every request answered: they waited
    most = seen(upstream.url)["most_in_progress"]
    if key == CAPPED:
        assert most == 2  # never more than its cap at the provider at once
    else:
        assert most > 2  # the team's other key is not held by the capped one's limit
