"""The supervisor process of `cascade serve --workers N`.

`cascade serve` checks the policy and keys (in a child of its own), then replaces itself
with this module (same pid: signals sent to it reach the supervisor), so the process that
only watches workers starts fresh and imports nothing the workers need: the settings
arrive in CASCADE_SUPERVISOR_SETTINGS (the environment, not argv, which `ps` shows).
"""

from __future__ import annotations

import functools
import os
import sys

from router.logs import make_logger
from router.settings import Settings
from router.supervisor import Supervisor, ledger_socket_path
from router.workers import serve_ledger_writer, serve_worker

SETTINGS_VARIABLE = "CASCADE_SUPERVISOR_SETTINGS"


def main(workers: int) -> int:
    settings = Settings.model_validate_json(os.environ.pop(SETTINGS_VARIABLE))
    writer = None
    if settings.ledger_url.startswith("sqlite:"):  # one writer for the node's workers
        path = ledger_socket_path(settings.spool_folder)
        writer = (functools.partial(serve_ledger_writer, settings, path), path)
        settings = settings.model_copy(update={"ledger_writer_socket": path})
    worker = functools.partial(serve_worker, settings)
    logger = make_logger(settings.log_level)
    return Supervisor(worker, workers, logger, writer=writer).run()


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1])))
