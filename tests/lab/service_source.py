"""Import modules of the reference service from its source tree (lab/payment_service), for its own fast suites."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

SOURCE = Path(__file__).resolve().parents[2] / "lab" / "payment_service"


def load(name: str) -> ModuleType:
    """payment_service.<name>, imported from the source tree; sys.path is left as it was."""
    sys.path.insert(0, str(SOURCE))
    try:
        return importlib.import_module(f"payment_service.{name}")
    finally:
        sys.path.remove(str(SOURCE))


def environ(**overrides: str) -> dict[str, str]:
    """A complete, valid service environment (values made up for the test), with overrides."""
    base = {
        "DATABASE_URL": "postgresql://payments_app:db-pass-4711@127.0.0.1:5432/payments",
        "REDIS_URL": "redis://:redis-pass-0815@127.0.0.1:6379/0",
        "PAYMENTS_API_KEY": "api-key-aaaaaaaaaaaaaaaa",
        "PAYMENTS_ADMIN_KEY": "admin-key-bbbbbbbbbbbbbbbb",
        "PAYMENTS_SMOKE_KEY": "smoke-key-cccccccccccccccc",
        "HASH_SALT": "salt-dddddddddddddddd",
        "STRIPE_SECRET_KEY": "sk_test_eeeeeeeeeeeeeeee",
        "STRIPE_WEBHOOK_SECRET": "whsec_ffffffffffffffff",
        "ENCRYPTION_KEY": "0123456789abcdef" * 4,
        "SERVICE_COLOUR": "blue",
    }
    return {**base, **overrides}
