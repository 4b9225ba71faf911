"""Service settings, read only from environment variables and checked before the service starts."""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass
from typing import Mapping
from urllib.parse import SplitResult, unquote, urlsplit

REQUIRED = ("DATABASE_URL", "REDIS_URL", "PAYMENTS_API_KEY")
COLOURS = ("blue", "green")
UNKNOWN_COLOUR = "unknown"
DEFAULT_STRIPE_API_BASE = "https://api.stripe.com"
DEFAULT_RATE_LIMIT_PER_MINUTE = 600
DEFAULT_SMOKE_RATE_LIMIT_PER_MINUTE = 10
# A key kept for load tests: a limit of its own, far above the load a test offers, so that the test measures the
# service and not the limiter, while a runaway client holding that key is still stopped.
DEFAULT_LOAD_RATE_LIMIT_PER_MINUTE = 60000
SMTP_SCHEMES = {"smtp": 25, "smtp+starttls": 587}  # scheme to default port
_HEX_KEY = re.compile(r"[0-9a-fA-F]{64}")
_STRIPE_KEY = re.compile(r"(sk|rk)_(test|live)_\S+")
_ORIGIN = re.compile(r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?")
EMAIL_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)*")


class ConfigError(Exception):
    """A setting is missing or malformed; the message names the variable, never its value."""


@dataclass(frozen=True)
class SmtpServer:
    """Where receipts are sent: SMTP_URL taken apart (user and password percent-decoded)."""

    host: str
    port: int
    starttls: bool
    username: str = ""
    password: str = ""


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
    smoke_key: str = ""
    smoke_rate_limit_per_minute: int = DEFAULT_SMOKE_RATE_LIMIT_PER_MINUTE
    load_key: str = ""
    load_rate_limit_per_minute: int = DEFAULT_LOAD_RATE_LIMIT_PER_MINUTE
    smtp: SmtpServer | None = None
    smtp_url: str = ""
    receipt_from: str = ""

    def secret_values(self) -> list[str]:
        """Values that must never appear in logs or responses (URL passwords included, raw and decoded)."""
        values = [self.api_key, self.admin_key, self.smoke_key, self.load_key, self.hash_salt, self.stripe_secret_key,
                  self.stripe_webhook_secret, self.encryption_key,
                  url_password(self.database_url), url_password(self.redis_url), url_password(self.smtp_url),
                  self.smtp.password if self.smtp else ""]
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
        smoke_key=environ.get("PAYMENTS_SMOKE_KEY", ""),
        smoke_rate_limit_per_minute=_non_negative_int(environ, "PAYMENTS_SMOKE_RATE_LIMIT_PER_MINUTE",
                                                      DEFAULT_SMOKE_RATE_LIMIT_PER_MINUTE),
        load_key=environ.get("PAYMENTS_LOAD_KEY", ""),
        load_rate_limit_per_minute=_non_negative_int(environ, "PAYMENTS_LOAD_RATE_LIMIT_PER_MINUTE",
                                                     DEFAULT_LOAD_RATE_LIMIT_PER_MINUTE),
        smtp=_smtp_server(environ.get("SMTP_URL", "")),
        smtp_url=environ.get("SMTP_URL", ""),
        receipt_from=environ.get("PAYMENTS_RECEIPT_FROM", "").strip(),
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


def _smtp_server(url: str) -> SmtpServer | None:
    """SMTP_URL: smtp://[user:password@]host[:port] or smtp+starttls://...; empty means no email is sent."""
    if not url:
        return None
    error = ConfigError("SMTP_URL must be smtp://[user:password@]host[:port] or smtp+starttls://..., "
                        "e.g. smtp://127.0.0.1:25")
    try:
        parts: SplitResult = urlsplit(url)
        port = parts.port
    except ValueError:
        raise error from None
    if parts.scheme not in SMTP_SCHEMES or not parts.hostname or parts.path not in ("", "/") or parts.query \
            or parts.fragment or (parts.password is not None and not parts.username):
        raise error
    return SmtpServer(host=parts.hostname, port=port or SMTP_SCHEMES[parts.scheme],
                      starttls=parts.scheme == "smtp+starttls", username=unquote(parts.username or ""),
                      password=unquote(parts.password or ""))


def _check(settings: Settings) -> None:
    if urlsplit(settings.database_url).scheme not in ("postgres", "postgresql"):
        raise ConfigError("DATABASE_URL must be a postgresql:// URL")
    if urlsplit(settings.redis_url).scheme not in ("redis", "rediss"):
        raise ConfigError("REDIS_URL must be a redis:// or rediss:// URL")
    if settings.encryption_key and not _HEX_KEY.fullmatch(settings.encryption_key):
        raise ConfigError("ENCRYPTION_KEY must be 64 hex characters (32 bytes)")
    if settings.admin_key and settings.admin_key == settings.api_key:
        raise ConfigError("PAYMENTS_ADMIN_KEY must differ from PAYMENTS_API_KEY")
    if settings.smoke_key and settings.smoke_key in (settings.api_key, settings.admin_key):
        raise ConfigError("PAYMENTS_SMOKE_KEY must differ from PAYMENTS_API_KEY and PAYMENTS_ADMIN_KEY")
    if settings.load_key and settings.load_key in (settings.api_key, settings.admin_key, settings.smoke_key):
        raise ConfigError("PAYMENTS_LOAD_KEY must differ from PAYMENTS_API_KEY, PAYMENTS_ADMIN_KEY and PAYMENTS_SMOKE_KEY")
    if settings.receipt_from and not EMAIL_ADDRESS.fullmatch(settings.receipt_from):
        raise ConfigError("PAYMENTS_RECEIPT_FROM must be an email address such as receipts@example.com")
    if settings.smtp and not settings.receipt_from:
        raise ConfigError("PAYMENTS_RECEIPT_FROM must be set when SMTP_URL is set (the sender of receipts)")
    if settings.colour not in (*COLOURS, UNKNOWN_COLOUR):
        raise ConfigError("SERVICE_COLOUR must be 'blue' or 'green'")
    if settings.stripe_secret_key and not _STRIPE_KEY.fullmatch(settings.stripe_secret_key):
        raise ConfigError("STRIPE_SECRET_KEY must be a Stripe secret or restricted key (sk_... or rk_...)")
    if settings.stripe_webhook_secret and not settings.stripe_webhook_secret.startswith("whsec_"):
        raise ConfigError("STRIPE_WEBHOOK_SECRET must be a webhook signing secret (whsec_...)")
    api_base = urlsplit(settings.stripe_api_base)
    if api_base.scheme not in ("http", "https") or not api_base.hostname or api_base.username or api_base.query:
        raise ConfigError("STRIPE_API_BASE must be an http(s):// URL without credentials, e.g. https://api.stripe.com")
