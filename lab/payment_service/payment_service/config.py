"""Service settings, read only from environment variables and checked before the service starts."""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass
from typing import Mapping
from urllib.parse import urlsplit

REQUIRED = ("DATABASE_URL", "REDIS_URL", "PAYMENTS_API_KEY")
COLOURS = ("blue", "green")
UNKNOWN_COLOUR = "unknown"
DEFAULT_STRIPE_API_BASE = "https://api.stripe.com"
DEFAULT_RATE_LIMIT_PER_MINUTE = 600
_HEX_KEY = re.compile(r"[0-9a-fA-F]{64}")
_STRIPE_KEY = re.compile(r"(sk|rk)_(test|live)_\S+")
_ORIGIN = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?")


class ConfigError(Exception):
    """A setting is missing or malformed; the message names the variable, never its value."""


@dataclass(frozen=True)
class Settings:
    """Everything the service reads from its environment."""

    database_url: str
    redis_url: str
    api_key: str
    admin_key: str
    hash_salt: str
    stripe_secret_key: str
    stripe_webhook_secret: str
    stripe_api_base: str
    encryption_key: str
    instance: str
    colour: str
    test_slow_ms: int
    rate_limit_per_minute: int
    cors_origins: frozenset[str]

    def secret_values(self) -> list[str]:
        """Values that must never appear in logs or responses (URL passwords included)."""
        values = [self.api_key, self.admin_key, self.hash_salt, self.stripe_secret_key,
                  self.stripe_webhook_secret, self.encryption_key,
                  url_password(self.database_url), url_password(self.redis_url)]
        return [value for value in values if value]


def url_password(url: str) -> str:
    """The password part of a URL, or an empty string."""
    return urlsplit(url).password or ""


def load_settings(environ: Mapping[str, str]) -> Settings:
    """Build the settings from an environment mapping or raise ConfigError."""
    missing = [name for name in REQUIRED if not environ.get(name)]
    if missing:
        raise ConfigError(f"missing required environment variable(s): {', '.join(missing)}")
    settings = Settings(
        database_url=environ["DATABASE_URL"],
        redis_url=environ["REDIS_URL"],
        api_key=environ["PAYMENTS_API_KEY"],
        admin_key=environ.get("PAYMENTS_ADMIN_KEY", ""),
        hash_salt=environ.get("HASH_SALT", ""),
        stripe_secret_key=environ.get("STRIPE_SECRET_KEY", ""),
        stripe_webhook_secret=environ.get("STRIPE_WEBHOOK_SECRET", ""),
        stripe_api_base=(environ.get("STRIPE_API_BASE") or DEFAULT_STRIPE_API_BASE).rstrip("/"),
        encryption_key=environ.get("ENCRYPTION_KEY", ""),
        instance=environ.get("SERVICE_INSTANCE") or socket.gethostname(),
        colour=environ.get("SERVICE_COLOUR") or UNKNOWN_COLOUR,
        test_slow_ms=_non_negative_int(environ, "PAYMENTS_TEST_SLOW_MS"),
        rate_limit_per_minute=_non_negative_int(environ, "PAYMENTS_RATE_LIMIT_PER_MINUTE",
                                                DEFAULT_RATE_LIMIT_PER_MINUTE),
        cors_origins=_origins(environ.get("PAYMENTS_CORS_ORIGINS", "")),
    )
    _check(settings)
    return settings


def _non_negative_int(environ: Mapping[str, str], name: str, default: int = 0) -> int:
    raw = environ.get(name) or str(default)
    if not raw.isdigit():
        raise ConfigError(f"{name} must be a non-negative integer")
    return int(raw)


def _origins(raw: str) -> frozenset[str]:
    """Browser origins allowed by CORS: exact scheme://host[:port] values; '*' is refused on purpose."""
    origins = frozenset(item.strip().rstrip("/") for item in raw.split(",") if item.strip())
    if not all(_ORIGIN.fullmatch(origin) for origin in origins):
        raise ConfigError("PAYMENTS_CORS_ORIGINS must be a comma-separated list of origins such as https://shop.example.com")
    return origins


def _check(settings: Settings) -> None:
    if urlsplit(settings.database_url).scheme not in ("postgres", "postgresql"):
        raise ConfigError("DATABASE_URL must be a postgresql:// URL")
    if urlsplit(settings.redis_url).scheme not in ("redis", "rediss"):
        raise ConfigError("REDIS_URL must be a redis:// or rediss:// URL")
    if settings.encryption_key and not _HEX_KEY.fullmatch(settings.encryption_key):
        raise ConfigError("ENCRYPTION_KEY must be 64 hex characters (32 bytes)")
    if settings.admin_key and settings.admin_key == settings.api_key:
        raise ConfigError("PAYMENTS_ADMIN_KEY must differ from PAYMENTS_API_KEY")
    if settings.colour not in (*COLOURS, UNKNOWN_COLOUR):
        raise ConfigError("SERVICE_COLOUR must be 'blue' or 'green'")
    if settings.stripe_secret_key and not _STRIPE_KEY.fullmatch(settings.stripe_secret_key):
        raise ConfigError("STRIPE_SECRET_KEY must be a Stripe secret or restricted key (sk_... or rk_...)")
    if settings.stripe_webhook_secret and not settings.stripe_webhook_secret.startswith("whsec_"):
        raise ConfigError("STRIPE_WEBHOOK_SECRET must be a webhook signing secret (whsec_...)")
    api_base = urlsplit(settings.stripe_api_base)
    if api_base.scheme not in ("http", "https") or not api_base.hostname or api_base.username or api_base.query:
        raise ConfigError("STRIPE_API_BASE must be an http(s):// URL without credentials, e.g. https://api.stripe.com")
