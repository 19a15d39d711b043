"""`cascade policy simulate`: recorded traffic replayed under a candidate policy.

Two streaming passes over the ledger: the first gathers the evidence (shadow checks,
feedback, how tiers' token counts relate), the second replays each request with the serving
code's own routing (replay.py) and tallies both sides (tally.py). Memory grows with the
evidence and the number of teams, routes and tiers, not with the number of requests.
"""

from router.simulate.run import Scope, simulate

__all__ = ["Scope", "simulate"]
