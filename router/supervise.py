"""The supervisor process of `cascade serve --workers N`.

`cascade serve` checks the policy and keys, then replaces itself with this module (same pid:
signals sent to it reach the supervisor), which starts afresh: it never loads the policy,
its classifiers or a model. The settings arrive in CASCADE_SUPERVISOR_SETTINGS (the
environment, not argv, which `ps` shows).

It imports the code the workers run (aiohttp, pydantic, llama_cpp, numpy, the router) and
freezes it out of the collector's way, then forks the workers: those pages stay shared
between every worker instead of each holding its own copy (~20 MB less per worker,
bench/RESULTS.md (k)). Nothing runs before the fork but imports: no event loop, no model,
no thread of llama.cpp's.
"""

from __future__ import annotations

import functools
import gc
import importlib
import os
import sys

from router.logs import make_logger
from router.settings import Settings
from router.supervisor import Supervisor, ledger_socket_path
from router.workers import serve_ledger_writer, serve_worker

SETTINGS_VARIABLE = "CASCADE_SUPERVISOR_SETTINGS"


_PRELOADED = ("llama_cpp", "numpy", "classifiers", "router.app", "router.backends.local_llama")


def _preload() -> None:
    """Import what every worker imports, and freeze it (see the module's docstring)."""
    for name in _PRELOADED:
        importlib.import_module(name)
    gc.collect()
    gc.freeze()


def main(workers: int) -> int:
    settings = Settings.model_validate_json(os.environ.pop(SETTINGS_VARIABLE))
    _preload()
    writer = None
    if settings.ledger_url.startswith("sqlite:"):  # one writer for the node's workers
        path = ledger_socket_path(settings.spool_folder)
        writer = (functools.partial(serve_ledger_writer, settings, path), path)
        settings = settings.model_copy(update={"ledger_writer_socket": path})
    worker = functools.partial(serve_worker, settings)
    logger = make_logger(settings.log_level)
    return Supervisor(worker, workers, logger, writer=writer, start_method="fork").run()


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1])))
