"""The processes of `cascade serve`: the supervisor of `--workers N` and what it forks.

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
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from router.ledger.targets import parse_ledger_url
from router.observe.logs import make_logger
from router.process.supervisor import Supervisor, ledger_socket_path
from router.settings import Settings

SETTINGS_VARIABLE = "CASCADE_SUPERVISOR_SETTINGS"


def serve_one(settings: Settings, reuse_port: bool) -> None:
    import uvloop

    from router.observe.logs import bridge_library_logs, make_logger
    from router.redact import Redactor
    from router.server.app import create_app
    from router.server.serving import serve

    redactor = Redactor.from_environment(os.environ)
    logger = make_logger(settings.log_level, redactor=redactor)
    bridge_library_logs(logger)
    app = create_app(settings, logger, redactor)
    logger.info("serving", host=settings.host, port=settings.port, policy=str(settings.policy_path))
    serve(app, logger, settings, reuse_port=reuse_port, loop=uvloop.new_event_loop())


def _own_signals() -> None:
    """A forked process starts with the supervisor's signal handlers: back to the defaults
    until the process sets its own (aiohttp's, the reloader's SIGHUP)."""
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, signal.SIG_DFL)


def serve_worker(settings: Settings, replaced: int) -> None:
    """One of `--workers` (in its own process): told how many workers were replaced."""
    _own_signals()
    serve_one(settings.model_copy(update={"workers_replaced": replaced}), reuse_port=True)


def serve_ledger_writer(settings: Settings, path: Path) -> None:
    """The node's SQLite ledger writer (in its own process)."""
    _own_signals()
    import uvloop

    from router.ledger import parse_ledger_url
    from router.ledger.node import run_node_writer
    from router.observe.logs import make_logger

    target = parse_ledger_url(settings.ledger_url)
    assert target.path is not None  # a sqlite URL
    uvloop.run(run_node_writer(target.path, path, make_logger(settings.log_level)))


_PRELOADED = (
    "llama_cpp",
    "numpy",
    "classifiers",
    "router.server.app",
    "router.backends.local_llama",
)


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
    if parse_ledger_url(settings.ledger_url, settings.redis_url).one_writer_per_node:
        path = ledger_socket_path(settings.spool_folder)
        writer = (functools.partial(serve_ledger_writer, settings, path), path)
        settings = settings.model_copy(update={"ledger_writer_socket": path})
    # each worker's own metrics, for the one a scrape reaches (0700: only this user)
    metrics_folder = Path(tempfile.mkdtemp(prefix="cascade-metrics-"))
    settings = settings.model_copy(update={"metrics_folder": metrics_folder})
    worker = functools.partial(serve_worker, settings)
    logger = make_logger(settings.log_level)
    try:
        return Supervisor(worker, workers, logger, writer=writer, start_method="fork").run()
    finally:
        shutil.rmtree(metrics_folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1])))
