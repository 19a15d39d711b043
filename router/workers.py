"""What the processes of `cascade serve` run: a server (alone, or one of `--workers`) and the
node's SQLite ledger writer. Each imports what it needs when it starts, so the supervisor
that names them as targets (router/supervise.py) imports nothing heavy."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from router.settings import Settings


def serve_one(settings: Settings, reuse_port: bool) -> None:
    import uvloop

    from router.app import create_app
    from router.logs import bridge_library_logs, make_logger
    from router.redact import Redactor
    from router.serving import serve

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
    from router.logs import make_logger

    target = parse_ledger_url(settings.ledger_url)
    assert target.path is not None  # a sqlite URL
    uvloop.run(run_node_writer(target.path, path, make_logger(settings.log_level)))
