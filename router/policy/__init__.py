"""The policy: what platform teams write in `policies/*.yaml`, parsed strictly."""

from router.policy.loader import LoadedPolicy, PolicyError, load_policy, parse_policy
from router.policy.model import (
    AcceptanceSpec,
    CascadeStep,
    LedgerSpec,
    LimitsSpec,
    LiteLLMTier,
    LlamaCppTier,
    OpenAITier,
    Policy,
    PriceSpec,
    RouteSpec,
    TierSpec,
)

__all__ = [
    "AcceptanceSpec",
    "CascadeStep",
    "LedgerSpec",
    "LimitsSpec",
    "LiteLLMTier",
    "LlamaCppTier",
    "LoadedPolicy",
    "OpenAITier",
    "Policy",
    "PolicyError",
    "PriceSpec",
    "RouteSpec",
    "TierSpec",
    "load_policy",
    "parse_policy",
]
