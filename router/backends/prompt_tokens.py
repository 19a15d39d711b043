"""A prompt as the model sees it: chat template applied, tokenized.

Used by the local tier to generate, by the server to enforce `limits.max_prompt_tokens` and
match rules on prompt size, and by `cascade policy explain` (from the GGUF's vocabulary
alone), so all three count the same tokens.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from router.backends.base import BackendError, Message, Prompt


class PromptTokenizer:
    """Tokens of a prompt for one llama.cpp model and chat format."""

    def __init__(self, llama: Any, chat_format: Literal["chatml", "gguf"]) -> None:
        self._llama = llama
        self._chat_format = chat_format

    @classmethod
    def from_gguf(cls, path: Path, chat_format: Literal["chatml", "gguf"]) -> PromptTokenizer:
        """Vocabulary only: no weights are loaded. (For command-line tools: llama.cpp's own
        notes on a vocabulary-only context, written to the process's stderr by C code, are
        silenced while it loads.)"""
        import llama_cpp

        with _c_stderr_silenced():
            llama = llama_cpp.Llama(str(path), vocab_only=True, verbose=False)
        return cls(llama, chat_format)

    def _tokens(self, text: str, *, special: bool) -> list[int]:
        return list(self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=special))

    def tokens(self, prompt: Prompt) -> list[int]:
        """With `chatml`, message text is tokenized with special tokens off, so a user cannot
        inject `<|im_start|>` into the conversation structure."""
        llama = self._llama
        if prompt.text is not None:
            add_bos = llama.metadata.get("tokenizer.ggml.add_bos_token", "false") == "true"
            return list(llama.tokenize(prompt.text.encode("utf-8"), add_bos=add_bos))
        if self._chat_format == "gguf":
            return self._tokens(self._gguf_template(prompt.messages), special=True)
        tokens: list[int] = []
        for message in prompt.messages:
            role = "system" if message.role == "developer" else message.role
            tokens += self._tokens(f"<|im_start|>{role}\n", special=True)
            tokens += self._tokens(message.content, special=False)
            tokens += self._tokens("<|im_end|>\n", special=True)
        return tokens + self._tokens("<|im_start|>assistant\n", special=True)

    def _gguf_template(self, messages: tuple[Message, ...]) -> str:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        llama = self._llama
        template = llama.metadata.get("tokenizer.chat_template")
        if not template:
            raise BackendError("error", "the GGUF has no chat template; use chat_format: chatml")
        special = {
            "eos_token": llama.detokenize([llama.token_eos()], special=True).decode(),
            "bos_token": llama.detokenize([llama.token_bos()], special=True).decode(),
        }
        formatter = Jinja2ChatFormatter(template=template, **special)
        chat: list[Any] = [{"role": m.role, "content": m.content} for m in messages]
        return str(formatter(messages=chat).prompt)


@contextlib.contextmanager
def _c_stderr_silenced() -> Iterator[None]:
    """File descriptor 2 pointed at /dev/null (what C libraries write there too)."""
    sys.stderr.flush()
    saved, quiet = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(quiet, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(quiet)


def estimate_tokens(prompt: Prompt) -> int:
    """Without a local tokenizer: ~4 UTF-8 bytes per token."""
    return (sum(len(t.encode()) for t in prompt.texts) + 3) // 4
