"""The policy: what platform teams write in `policies/*.yaml`, parsed strictly."""

from router.backends.litellm_provider import LiteLLMTier
from router.backends.local_llama import LlamaCppTier
from router.backends.openai_http import OpenAITier
from router.backends.spec import PriceSpec
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
