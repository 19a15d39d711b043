"""Grammar-constrained decoding for the local tier: which tokens a llama.cpp grammar allows.

A `response_format` becomes a GBNF grammar (llama-cpp-python's JSON Schema converter, or its
generic JSON grammar for `json_object` and for schemas the converter cannot express); a
`GrammarGate` wraps one llama.cpp grammar sampler for one generation. The decode loop asks
the gate to filter the 40 most likely tokens first and the whole vocabulary only when none
of those is allowed: decode under a grammar applied to all ~49k tokens each step measured
3.3x slower than without one, this way 1.4x (bench/RESULTS.md, (i)).
"""

from __future__ import annotations

import ctypes
import json
from collections import OrderedDict
from typing import Any

import numpy as np
import numpy.typing as npt

from router.output_format import OutputFormat

_TOKEN_DATA = np.dtype([("id", np.intc), ("logit", np.single), ("p", np.single)], align=True)


class GrammarCache:
    """GBNF text per output format, the last `size` kept (converting a schema is Python)."""

    def __init__(self, size: int = 64) -> None:
        self._size = size
        self._grammars: OrderedDict[str, str] = OrderedDict()

    def grammar(self, output: OutputFormat) -> str:
        from llama_cpp.llama_grammar import JSON_GBNF, json_schema_to_gbnf

        if output.schema is None:
            return str(JSON_GBNF)
        key = json.dumps(output.schema, sort_keys=True)
        found = self._grammars.get(key)
        if found is not None:
            self._grammars.move_to_end(key)
            return found
        try:
            grammar = str(json_schema_to_gbnf(key))
        except Exception:  # noqa: BLE001 - a schema the converter cannot express
            grammar = JSON_GBNF  # any JSON; the answer is still validated against the schema
        self._grammars[key] = grammar
        if len(self._grammars) > self._size:
            self._grammars.popitem(last=False)
        return grammar


class GrammarGate:
    """One llama.cpp grammar sampler over one generation (used on one thread; `close` it)."""

    def __init__(self, llama_cpp: Any, vocab: Any, grammar: str, n_vocab: int) -> None:
        from llama_cpp.llama_grammar import JSON_GBNF

        self._lib = llama_cpp
        self._sampler = llama_cpp.llama_sampler_init_grammar(vocab, grammar.encode(), b"root")
        if not self._sampler:  # a grammar llama.cpp cannot parse: fall back to any JSON
            self._sampler = llama_cpp.llama_sampler_init_grammar(vocab, JSON_GBNF.encode(), b"root")
        self._data = np.zeros(n_vocab, dtype=_TOKEN_DATA)
        self._array = llama_cpp.llama_token_data_array(
            data=self._data.ctypes.data_as(llama_cpp.llama_token_data_p),
            size=0,
            selected=-1,
            sorted=False,
        )

    def allowed(
        self, ids: npt.NDArray[np.intc], logits: npt.NDArray[np.float32]
    ) -> npt.NDArray[np.intc]:
        """The tokens of `ids` (with their `logits`) the grammar allows next, in order."""
        size = ids.shape[0]
        self._data["id"][:size] = ids
        self._data["logit"][:size] = logits
        self._array.size = size
        self._array.selected = -1
        self._array.sorted = False
        self._lib.llama_sampler_apply(self._sampler, ctypes.byref(self._array))
        allowed: npt.NDArray[np.intc] = ids[np.isfinite(self._data["logit"][:size])]
        return allowed

    def accept(self, token: int) -> None:
        self._lib.llama_sampler_accept(self._sampler, token)

    def close(self) -> None:
        if self._sampler:
            self._lib.llama_sampler_free(self._sampler)
            self._sampler = None
