"""Keep credentials out of everything that leaves the process: error bodies, logs, records.

Two nets: by shape (`sk-...` keys, `Bearer ...` tokens, URL passwords), and by value: every
configured secret (the environment variables a policy names for its tiers' keys, and any
`*_KEY`, `*_TOKEN`, `*_SECRET`, `*_PASSWORD` variable), in the forms it travels in (as is,
percent-encoded, base64, base64 of HTTP Basic's `user:key`), whatever surrounds it.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping
from urllib.parse import quote, urlsplit

_SECRET = re.compile(r"(sk-[A-Za-z0-9_\-]{6,}|Bearer\s+\S+|(?<=://)[^/@\s:]*:[^/@\s]+(?=@))")
_SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD)$", re.IGNORECASE)
_URL_NAMES = ("CASCADE_REDIS_URL", "CASCADE_LEDGER")
MIN_SECRET_CHARS = 8  # shorter values would scrub ordinary words
REDACTED = "[redacted]"


def redact(text: str) -> str:
    """Replace API keys, bearer tokens and URL passwords (by shape) with `[redacted]`."""
    return _SECRET.sub(REDACTED, text)


def _forms(secret: str) -> set[str]:
    raw = secret.encode()
    forms = {secret, quote(secret, safe=""), base64.b64encode(raw).decode().rstrip("=")}
    for prefix in (b":", b"user:"):  # HTTP Basic credentials carrying the key
        forms.add(base64.b64encode(prefix + raw).decode().rstrip("="))
    return {form for form in forms if len(form) >= MIN_SECRET_CHARS}


class Redactor:
    """Scrubs known secret values (in every form above), then secret shapes."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._forms: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self.add(secrets)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str], names: Iterable[str] = ()) -> Redactor:
        """Secrets from the variables named (a policy's `api_key_env`s), every variable
        whose name ends in KEY, TOKEN, SECRET or PASSWORD, and the passwords of the
        Redis and ledger URLs."""
        wanted = {name for name in environ if _SECRET_NAME.search(name)} | set(names)
        secrets = [environ[name] for name in wanted if environ.get(name)]
        for name in _URL_NAMES:
            password = urlsplit(environ.get(name, "")).password
            if password:
                secrets.append(password)
        return cls(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        forms = set(self._forms)
        for secret in secrets:
            if len(secret) >= MIN_SECRET_CHARS:
                forms |= _forms(secret)
        if forms != self._forms:
            self._forms = forms
            ordered = sorted(forms, key=len, reverse=True)  # longest first
            self._pattern = re.compile("|".join(map(re.escape, ordered)))

    def __call__(self, text: str) -> str:
        if self._pattern is not None:
            text = self._pattern.sub(REDACTED, text)
        return redact(text)
