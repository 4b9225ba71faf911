"""Faults baked into a deliberately wrong build (build_release.py --fault), to prove that smoke checks catch them.

A normal build ships no build_faults.json and has none. A fault build ships the list, and the service logs a
warning at start for each fault: such a release must never serve real traffic.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

from .config import ConfigError

FAULTS_PATH = Path(__file__).resolve().parent / "build_faults.json"
AUTH_DISABLED = "auth-disabled"  # every endpoint accepts any request, with the API and the admin role
NO_SECURITY_HEADERS = "no-security-headers"  # responses carry no security header
# Healthy by every health check and the smoke test's small payments; only real traffic shows it.
PAYMENT_REGRESSION = "payment-regression"
KNOWN = {AUTH_DISABLED: "every endpoint accepts requests without a valid token",
         NO_SECURITY_HEADERS: "responses carry no security headers",
         PAYMENT_REGRESSION: "every 5th payment of 10.00 or more fails with 500 (before Stripe is called)"}
REGRESSION_MIN_AMOUNT = 1000  # in the currency's smallest unit: 10.00
REGRESSION_EVERY = 5


class InjectedFailure(RuntimeError):
    """The error a fault build raises on purpose: the service answers it like any unhandled error (500)."""


class PaymentRegression:
    """The payment-regression fault: counts payments of REGRESSION_MIN_AMOUNT or more since the start, and every
    REGRESSION_EVERY-th of them fails. A count, not chance, so a test knows which ones."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._large = 0

    def strikes(self, amount: int) -> bool:
        """Whether this payment attempt fails."""
        if amount < REGRESSION_MIN_AMOUNT:
            return False
        with self._lock:
            self._large += 1
            return self._large % REGRESSION_EVERY == 0


def load_build_faults(path: Path = FAULTS_PATH) -> frozenset[str]:
    """The faults of this build: none without the file; an unknown or malformed list stops the start."""
    if not path.exists():
        return frozenset()
    try:
        faults = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read {path.name}: {type(exc).__name__}") from None
    if not isinstance(faults, list) or not all(isinstance(name, str) and name in KNOWN for name in faults):
        raise ConfigError(f"{path.name} must be a list of known build faults ({', '.join(sorted(KNOWN))})")
    return frozenset(faults)
