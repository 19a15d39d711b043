"""The exact-match response cache (docs/cache.md)."""

from router.cache.entry import Entry, Fold, storable
from router.cache.response_cache import Lookup, PolicyCache, ResponseCache

__all__ = ["Entry", "Fold", "Lookup", "PolicyCache", "ResponseCache", "storable"]
