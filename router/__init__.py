"""cascade: an OpenAI-compatible LLM routing and cascade proxy."""

__version__ = "0.1.0"
