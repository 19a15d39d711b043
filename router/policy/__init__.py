"""The policy: what platform teams write in `policies/*.yaml`, parsed strictly.

A tier type's spec lives with its backend (router/backends/) and is registered once, in
router/backends/registry.py; this package only parses and checks the file.
"""

from router.policy.loader import LoadedPolicy, PolicyError, load_policy, parse_policy
from router.policy.model import (
    AcceptanceSpec,
    CascadeStep,
    LedgerSpec,
    LimitsSpec,
    Policy,
    RouteSpec,
    TierSpec,
)

__all__ = [
    "AcceptanceSpec",
    "CascadeStep",
    "LedgerSpec",
    "LimitsSpec",
    "LoadedPolicy",
    "Policy",
    "PolicyError",
    "RouteSpec",
    "TierSpec",
    "load_policy",
    "parse_policy",
]
