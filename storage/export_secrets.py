"""What an export must not carry: credentials, by the name of their key or the shape of
their value (SPEC "Export": never the bot token, agent tokens or secrets).

A key names a credential when one of its words is one (`api_token`, `clientSecret`,
`password`); a count of tokens (`prompt_tokens`, `total_tokens`, `token_count`) is not,
so the token usage Tickler records in openai mode exports as it is. A value looks like a
credential when it has the shape of one (a Telegram bot token, `sk-...`, `Bearer ...`,
a GitHub or Slack token, a JWT, a private key) or is one of the configured secrets.

Export never stops over one: the key is left out and the value becomes `[redacted]`,
so an export of the same data is the same bytes every time and imports as it is.
`validate-export` reports either kind in a file written by hand.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["REDACTED", "Scrubber", "secret_key", "secret_problems"]

REDACTED = "[redacted]"

#: Words that name a credential on their own. "tokens" (plural) is a count, not here.
_SECRET_WORDS = frozenset(
    {
        "token",
        "secret",
        "password",
        "passwd",
        "passphrase",
        "credential",
        "credentials",
        "apikey",
        "authorization",
        "bearer",
        "cookie",
    }
)
#: Word pairs that name one: api_key, private_key, access_key.
_SECRET_PAIRS = frozenset({("api", "key"), ("private", "key"), ("access", "key")})
#: A last word that makes the key a measure of something, not the thing.
_MEASURES = frozenset({"count", "counts", "limit", "limits", "usage", "budget", "total"})
_WORD = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")

#: Shapes of credentials; short fragments (`sk-1`) are not, so prose stays as written.
_SECRET_VALUE = re.compile(
    "|".join(
        (
            r"\b\d{5,}:[A-Za-z0-9_-]{30,}",  # a Telegram bot token
            r"\bsk-[A-Za-z0-9_-]{16,}",  # OpenAI-style API keys
            r"(?i:\bbearer\s+)[A-Za-z0-9._~+/=-]{16,}",
            r"\bgh[pousr]_[A-Za-z0-9]{30,}|\bgithub_pat_[A-Za-z0-9_]{30,}",
            r"\bxox[abprs]-[A-Za-z0-9-]{10,}",  # Slack
            r"\bAKIA[0-9A-Z]{16}\b",  # AWS access key id
            r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}",  # a JWT
            r"-----BEGIN [A-Z ]*PRIVATE KEY-----",
        )
    )
)
#: Configured secrets shorter than this are not searched for (they would match anywhere).
_MIN_KNOWN = 8


def secret_key(key: str) -> bool:
    """True when the key's name means a credential (not a count of tokens)."""
    words = [w.lower() for w in _WORD.findall(key)]
    if not words or words[-1] in _MEASURES:
        return False
    if any(w in _SECRET_WORDS for w in words):
        return True
    return any(pair in _SECRET_PAIRS for pair in itertools.pairwise(words))


class Scrubber:
    """Takes credentials out of exported values (see the module docstring)."""

    def __init__(self, known: Iterable[str | None] = ()) -> None:
        values = {s for s in known if s and len(s) >= _MIN_KNOWN}
        # Longest first, so a secret that contains another is redacted whole.
        self._known = sorted(values, key=len, reverse=True)

    def text(self, text: str) -> str:
        for secret in self._known:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return _SECRET_VALUE.sub(REDACTED, text)

    def value(self, value: Any) -> Any:
        """`value` without credential-named keys and with credential-shaped text
        redacted, at any depth."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, Mapping):
            return {k: self.value(v) for k, v in value.items() if not secret_key(str(k))}
        if isinstance(value, list):
            return [self.value(v) for v in value]
        return value


def secret_problems(value: Any) -> list[str]:
    """What in `value` is a credential, one phrase each ("secret-looking key 'x'")."""
    found: list[str] = []
    if isinstance(value, str):
        if _SECRET_VALUE.search(value):
            found.append("a secret-looking value")
    elif isinstance(value, Mapping):
        for key, inner in value.items():
            if secret_key(str(key)):
                found.append(f"secret-looking key {str(key)!r}")
            found.extend(secret_problems(inner))
    elif isinstance(value, list):
        for inner in value:
            found.extend(secret_problems(inner))
    return found
