"""The long-lived objects every request handler uses."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import redis

from .build_faults import PaymentRegression
from .cache import CustomerCache
from .config import Settings
from .database import Database
from .mailer import Mailer
from .manifest import Manifest
from .metrics import Metrics
from .ratelimit import RateLimiter
from .stripe_gateway import StripeGateway


@dataclass(frozen=True)
class Service:
    """Settings, release manifest, clients and metrics of this process."""

    settings: Settings
    manifest: Manifest
    database: Database
    redis: redis.Redis  # readiness PING only: the limiter and the cache have their own clients with short timeouts
    metrics: Metrics
    logger: logging.Logger
    stripe: StripeGateway
    limiter: RateLimiter
    customers: CustomerCache
    mailer: Mailer | None = None  # None without SMTP_URL: no email is sent
    faults: frozenset[str] = frozenset()  # a deliberately wrong build's faults (build_faults.py)
    regression: PaymentRegression | None = None  # only in a build with the payment-regression fault
    last_checks: dict[str, str] = field(default_factory=dict)  # readiness results, to log only changes
