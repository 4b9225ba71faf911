# Copyright: Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Redaction applied to everything a run report keeps, whatever the task's no_log said.

Defence in depth: a result field that should never hold a secret is still scanned for the shapes secrets have
(Stripe keys, webhook signing secrets, PEM blocks, passwords in URLs), and any value kept under a key whose name
says secret, password, key or token is dropped.
"""

from __future__ import annotations

import re

REDACTED = "<redacted>"

SECRET_KEY_NAME = re.compile(r"secret|password|passwd|key|token", re.IGNORECASE)
# Documented result fields named like a key that identify one without revealing it.
NOT_SECRET_NAMES = frozenset(("key_id", "key_hint", "idempotency_key", "idempotency_keys", "advisory_lock_key"))
SECRET_PATTERNS = (
    re.compile(r"-----BEGIN [A-Z0-9 ]+-----.*?(?:-----END [A-Z0-9 ]+-----|\Z)", re.DOTALL),
    re.compile(r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]+"),
    re.compile(r"\b(?:sk|rk)_[A-Za-z0-9]{8,}"),
    re.compile(r"\bwhsec_[A-Za-z0-9+/=]+"),
)
# The password of a URL's userinfo (postgresql://user:password@host).
URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^/\s:@]*:)[^@\s/]+@", re.IGNORECASE)


def redact_text(text: str) -> str:
    """TEXT with every secret-shaped part replaced by <redacted>."""
    for pattern in SECRET_PATTERNS:
        text = pattern.sub(REDACTED, text)
    return URL_PASSWORD.sub(lambda match: f"{match.group('head')}{REDACTED}@", text)


def redact(value, key_name: str = ""):
    """A copy of VALUE (JSON-like data) with secret-named keys' values and secret-shaped strings replaced."""
    if key_name and key_name.rsplit(".", 1)[-1] not in NOT_SECRET_NAMES and SECRET_KEY_NAME.search(key_name) \
            and value not in (None, "", [], {}) and not isinstance(value, bool):
        return REDACTED
    if isinstance(value, dict):
        return {str(key): redact(item, str(key)) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact(item) for item in value]
    if isinstance(value, str):
        return redact_text(value)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return redact_text(str(value))
