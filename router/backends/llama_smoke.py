"""`python -m router.backends.llama_smoke`: does this machine's llama.cpp build run here?

It loads the bundled model and decodes a prompt of a dozen tokens (a batched matrix multiply,
where llama.cpp uses the CPU's widest instructions). A build that uses an instruction this
CPU, or the VM it runs in, does not allow dies of SIGILL here instead of in `cascade serve`:
`make` runs this after installing and rebuilds llama-cpp-python once if it fails (a wheel in
pip's cache built for another CPU, or with AMX on a VM that reports AMX and faults on it).
"""

from __future__ import annotations

import sys


def main() -> int:
    from llama_cpp import Llama

    from router.backends.local_llama import bundled_model_path

    llm = Llama(model_path=str(bundled_model_path()), n_ctx=256, verbose=False)
    llm("The quick brown fox jumps over the lazy dog, and then it", max_tokens=2)
    print("llama.cpp runs on this CPU", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
