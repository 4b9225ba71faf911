# Copyright (c) Payments Platform Team
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

"""Verdicts on the quality of a service's secrets: strength, placeholders, image defaults, TLS, reuse across environments.

Private to the payments.deploy collection: the interface may change without notice.
Every message names the variable and the rule, never the value (nor a part of it).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
import re
import typing as t
from collections import Counter
from urllib.parse import parse_qs, unquote, urlsplit

from ansible_collections.payments.deploy.plugins.module_utils._conninfo import ConninfoError, parse_database_url

CHECKS = ("HASH_SALT", "DATABASE_URL", "REDIS_URL", "STRIPE_WEBHOOK_SECRET")
# Values seen in tutorials, image defaults and config templates, compared without case and punctuation.
KNOWN_DEFAULTS = frozenset((
    "changeme", "secret", "test", "testing", "salt", "hashsalt", "password", "passw0rd", "pass", "default", "example",
    "dummy", "placeholder", "todo", "tbd", "none", "null", "admin", "root", "postgres", "redis", "payments", "lab",
    "dev", "development", "staging", "production", "prod", "local", "insecure", "notsecret", "mysecret", "supersecret",
    "letmein", "qwerty", "123456", "12345678", "1234567890", "abc123", "foobar", "foo", "bar", "xxx", "s3cr3t",
))
PLACEHOLDER_PARTS = ("changeme", "replaceme", "placeholder", "example", "insecure", "notsecret", "yoursecret",
                     "fillmein", "setme")
HEX = re.compile(r"(?:[0-9a-fA-F]{2})+\Z")
BASE64 = re.compile(r"[A-Za-z0-9+/_-]+={1,2}\Z")
SHA256_HEX = re.compile(r"[0-9a-f]{64}\Z")
SECURE_SSLMODES = ("verify-ca", "verify-full")
DB_DEFAULT_USERS = ("postgres",)


def folded(value: str) -> str:
    return re.sub(r"[^a-z0-9]", "", value.lower())


def is_known_default(value: str) -> bool:
    """A value from a template or an image default: changeme, secret, postgres... or CHANGE_ME_64_HEX_CHARACTERS."""
    plain = folded(value)
    return plain in KNOWN_DEFAULTS or any(part in plain for part in PLACEHOLDER_PARTS) or len(set(value)) <= 2


def shannon_bits(data: t.Sequence[t.Any]) -> float:
    """The Shannon entropy per symbol of a sample (an estimate: a random sample of n symbols cannot exceed log2 n)."""
    counts = Counter(data)
    return -sum(n / len(data) * math.log2(n / len(data)) for n in counts.values()) if data else 0.0


def decoded_bytes(value: str) -> bytes | None:
    """The bytes a hex or a padded base64 value encodes; None for other text."""
    if HEX.match(value):
        return bytes.fromhex(value)
    if BASE64.match(value) and value.endswith("=") and len(value) % 4 == 0:
        try:
            return base64.b64decode(value.replace("-", "+").replace("_", "/"), validate=True)
        except (binascii.Error, ValueError):
            return None
    return None


def salt_strength(value: str) -> tuple[float, bool]:
    """(the bytes of randomness the salt can hold, whether it looks random): hex and padded base64 are decoded first;
    other text (unpadded base64 too) counts one byte a character."""
    raw = decoded_bytes(value)
    if raw is not None:
        # random bytes repeat little; a hex or base64 form of a word or a pattern does
        return float(len(raw)), len(set(raw)) >= min(len(raw), 32) * 0.6
    return float(len(value)), shannon_bits(value) >= 3.5 and len(set(value)) >= 12


def digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def check_hash_salt(value: str, min_bytes: int, other_digests: t.Mapping[str, t.Sequence[str]]) -> list[str]:
    if not value:
        return ["HASH_SALT is empty"]
    if is_known_default(value):
        return ["HASH_SALT is a known default or placeholder: generate one with `openssl rand -hex 32`"]
    problems = []
    size, random_looking = salt_strength(value)
    if size < min_bytes:
        problems.append(f"HASH_SALT holds about {size:g} bytes of randomness, fewer than the {min_bytes} required "
                        "(64 hex characters, 44 base64 characters or 32 random characters: `openssl rand -hex 32`)")
    elif not random_looking:
        problems.append("HASH_SALT does not look random (few distinct characters or bytes): `openssl rand -hex 32`")
    mine = digest(value)
    for environment, digests in sorted(other_digests.items()):
        if mine in {d.strip().lower() for d in digests}:
            problems.append(f"HASH_SALT is the same as {environment}'s: each environment needs its own, or a leak of "
                            f"{environment}'s lets its e-mail hashes be matched against this one's")
    return problems


def check_password(label: str, password: str, strict: bool, min_length: int, defaults: t.Sequence[str] = ()) -> list[str]:
    if not password:
        return [f"{label} has no password"]
    if is_known_default(password) or password in defaults:
        return [f"{label} uses a known default password"]
    if strict and len(password) < min_length:
        return [f"{label} has a password of {len(password)} characters, fewer than the {min_length} required"]
    return []


def check_database_url(value: str, strict: bool, min_length: int) -> list[str]:
    if not value:
        return ["DATABASE_URL is empty"]
    try:
        parsed = parse_database_url(value, "DATABASE_URL")
    except ConninfoError as exc:
        return [str(exc)]
    problems = []
    user = parsed.get("user", "")
    if not parsed.get("password") and parsed.get("sslcert"):
        pass  # a client certificate authenticates instead of a password
    elif user in DB_DEFAULT_USERS and parsed.get("password", "") in ("", "postgres", "password"):
        problems.append("DATABASE_URL uses the image's default credentials (postgres/postgres)")
    else:
        problems.extend(check_password("DATABASE_URL", parsed.get("password", ""), strict, min_length, (user,)))
    if strict and user in DB_DEFAULT_USERS:
        problems.append("DATABASE_URL logs in as the superuser postgres: the service needs a role of its own")
    if strict and parsed.get("sslmode", "prefer") not in SECURE_SSLMODES:
        problems.append(f"DATABASE_URL has sslmode={parsed.get('sslmode', 'prefer')}: use verify-full (or verify-ca) with "
                        "sslrootcert=<CA file>, so that the server's certificate is checked")
    return problems


def check_redis_url(value: str, strict: bool, min_length: int) -> list[str]:
    if not value:
        return ["REDIS_URL is empty"]
    try:
        parts = urlsplit(value)
        parts.port  # pylint: disable=pointless-statement  # raises on a port that is not a number
    except ValueError:
        return ["REDIS_URL is not a valid URL (the value is not shown)"]
    if parts.scheme not in ("redis", "rediss", "unix"):
        return [f"REDIS_URL must be a redis://, rediss:// or unix:// URL (its scheme is {parts.scheme or 'missing'})"]
    query = parse_qs(parts.query)
    password = unquote(parts.password or "") or (query.get("password") or [""])[0]
    user = unquote(parts.username or "") or "default"
    problems = []
    if not password:
        problems.append("REDIS_URL has no password (Redis's default user without a password: requirepass or an ACL user)")
    else:
        problems.extend(check_password("REDIS_URL", password, strict, min_length, (user, "redis", "default")))
    if strict and parts.scheme != "rediss":
        problems.append(f"REDIS_URL uses {parts.scheme}://: use rediss:// so that the password and cached values travel "
                        "encrypted")
    if strict and (query.get("ssl_cert_reqs") or [""])[0].lower() in ("none", "optional"):
        problems.append("REDIS_URL turns off certificate verification (ssl_cert_reqs): use ssl_cert_reqs=required")
    return problems


def check_webhook_secret(value: str) -> list[str]:
    if not value:
        return ["STRIPE_WEBHOOK_SECRET is empty"]
    if not value.startswith("whsec_"):
        return ["STRIPE_WEBHOOK_SECRET does not start with whsec_ (Stripe's endpoint signing secrets do)"]
    if len(value) < len("whsec_") + 16 or is_known_default(value[len("whsec_"):]):
        return ["STRIPE_WEBHOOK_SECRET is a placeholder or too short to be one Stripe issued"]
    return []


def check_env(env: t.Mapping[str, t.Any], checks: t.Sequence[str], strict: bool, min_salt_bytes: int,
              min_password_length: int, other_salt_digests: t.Mapping[str, t.Sequence[str]]) -> dict[str, list[str]]:
    """The problems of each checked variable (an empty list: it passes)."""
    verdicts: dict[str, list[str]] = {}
    for name in checks:
        value = env.get(name)
        if value is None:
            verdicts[name] = [f"{name} is not set"]
            continue
        text = str(value)
        if name == "HASH_SALT":
            verdicts[name] = check_hash_salt(text, min_salt_bytes, other_salt_digests)
        elif name == "DATABASE_URL":
            verdicts[name] = check_database_url(text, strict, min_password_length)
        elif name == "REDIS_URL":
            verdicts[name] = check_redis_url(text, strict, min_password_length)
        else:
            verdicts[name] = check_webhook_secret(text)
    return verdicts
