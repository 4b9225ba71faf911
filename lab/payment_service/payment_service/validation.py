"""Input checks shared by the payment, refund and invoice endpoints: each failure is a 400 naming the field."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from .web import HTTPError, Request

MIN_AMOUNT = 50  # Stripe's smallest card charge in most currencies (0.50)
MAX_AMOUNT = 99_999_999  # Stripe's largest amount in the smallest currency unit
MAX_DESCRIPTION = 500
# Visible ASCII only; short enough that a prefixed Stripe idempotency key stays under Stripe's 255 characters.
_IDEMPOTENCY_KEY = re.compile(r"[!-~]{1,200}")
_CURRENCY = re.compile(r"[A-Za-z]{3}")
_STRIPE_ID = re.compile(r"[A-Za-z0-9_]+")


def idempotency_key(request: Request) -> str:
    """The Idempotency-Key header: required on every request that creates something at Stripe."""
    key = optional_idempotency_key(request)
    if key is None:
        raise HTTPError(400, "idempotency_key_required", "the Idempotency-Key header is required")
    return key


def optional_idempotency_key(request: Request) -> str | None:
    """The Idempotency-Key header when the client sent one."""
    key = request.header("Idempotency-Key").strip()
    if not key:
        return None
    if not _IDEMPOTENCY_KEY.fullmatch(key):
        raise HTTPError(400, "invalid_idempotency_key", "Idempotency-Key must be 1 to 200 visible ASCII characters")
    return key


def derived_id(prefix: str, scoped_key: str) -> str:
    """A stable id for the object a scoped idempotency key creates: a retry names the same row and the same
    Stripe metadata, so Stripe's replay of the first request matches the retried one."""
    return f"{prefix}_{hashlib.sha256(scoped_key.encode('utf-8')).hexdigest()[:24]}"


def fields(payload: Any, required: frozenset[str], optional: frozenset[str] = frozenset()) -> dict[str, Any]:
    """The body as a dict with every required field and no unknown one."""
    if not isinstance(payload, dict):
        raise HTTPError(400, "invalid_request", "body must be a JSON object")
    unknown = sorted(set(payload) - required - optional)
    if unknown:
        raise HTTPError(400, "invalid_request", f"unknown field(s): {', '.join(unknown)}")
    missing = sorted(name for name in required if payload.get(name) is None)
    if missing:
        raise HTTPError(400, "invalid_request", f"missing field(s): {', '.join(missing)}")
    return payload


def amount(value: Any, field: str = "amount", minimum: int = MIN_AMOUNT) -> int:
    """A whole number of the currency's smallest unit within Stripe's limits."""
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= MAX_AMOUNT:
        raise HTTPError(400, f"invalid_{field}", f"{field} must be an integer from {minimum} to {MAX_AMOUNT}")
    return value


def currency(value: Any) -> str:
    """A three-letter ISO currency code, lower-cased as Stripe writes it."""
    if not isinstance(value, str) or not _CURRENCY.fullmatch(value):
        raise HTTPError(400, "invalid_currency", "currency must be a three-letter ISO code such as eur")
    return value.lower()


def stripe_id(value: Any, field: str, prefix: str) -> str:
    """An identifier such as pm_... or cus_...: the prefix followed by letters, digits and '_'."""
    if not isinstance(value, str) or not value.startswith(prefix) or not _STRIPE_ID.fullmatch(value) \
            or len(value) > 255 or value == prefix:
        raise HTTPError(400, f"invalid_{field}", f"{field} must be an identifier starting with {prefix}")
    return value


def text(value: Any, field: str, required: bool = False) -> str | None:
    """A free text of at most MAX_DESCRIPTION characters (surrounding white space removed)."""
    if value is None and not required:
        return None
    if not isinstance(value, str) or len(value) > MAX_DESCRIPTION or (required and not value.strip()):
        raise HTTPError(400, f"invalid_{field}", f"{field} must be a non-empty string of at most {MAX_DESCRIPTION} characters")
    return value.strip() or None
