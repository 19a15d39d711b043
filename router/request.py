"""The cascade's view of a request: what the executor, the cache and the backends need of it,
free of any wire format (router/api/ builds it from a client's body)."""

from __future__ import annotations

from dataclasses import dataclass

from router.backends.base import GenerationParams, Prompt


@dataclass(frozen=True, slots=True)
class BillableInput:
    """What a provider bills as input besides the messages' text (router/api/billable.py):
    tool and function definitions, tool calls and their arguments, a response schema (their
    UTF-8 bytes: no token is shorter than a byte), and images, audio and files (`media_tokens`,
    at their documented upper bound)."""

    text_bytes: int = 0
    media_tokens: int = 0
    text: str = ""  # the text of the above, for a tokenizer that can count it exactly


@dataclass(frozen=True, slots=True)
class ClientRequest:
    model: str
    prompt: Prompt
    params: GenerationParams
    stream: bool
    include_usage: bool
    features: frozenset[str] = frozenset()  # what a tier must serve to answer it
    billable: BillableInput = BillableInput()  # input billed beyond the prompt's text
    choices: int = 1  # `n`: answers generated, each up to max_tokens
    prompt_tokens: int | None = None  # counted by the gateway, when it counted them

    @property
    def output_bound(self) -> int:
        """Tokens the provider may bill as output at most: every choice at max_tokens."""
        return self.params.max_tokens * self.choices
