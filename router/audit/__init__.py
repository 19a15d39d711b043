"""`cascade audit`: route-audit reports from the ledger, aggregated in one streaming pass."""

from router.audit.aggregate import DIMENSIONS, Aggregator
from router.audit.report import build_report

__all__ = ["DIMENSIONS", "Aggregator", "build_report"]
