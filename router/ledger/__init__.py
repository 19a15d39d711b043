"""The ledger: every decision record, written off the request path to a durable sink.

`Ledger` (writer.py) queues records and delivers them in batches; a sink that cannot take
them sends them to a local spool (spool.py) that is replayed, in order, when it recovers.
Sinks and their readers: SQLite (sqlite.py), Redis Stream (redis_stream.py), JSONL
(jsonl.py); `open_sink` / `open_reader` (targets.py) pick one from a `CASCADE_LEDGER` URL.
"""

from router.ledger.base import Entry, LedgerError, Reader, Sink, SinkUnavailable
from router.ledger.targets import LedgerTarget, open_reader, open_sink, parse_ledger_url
from router.ledger.writer import Ledger, LedgerStats

__all__ = [
    "Entry",
    "Ledger",
    "LedgerError",
    "LedgerStats",
    "LedgerTarget",
    "Reader",
    "Sink",
    "SinkUnavailable",
    "open_reader",
    "open_sink",
    "parse_ledger_url",
]
