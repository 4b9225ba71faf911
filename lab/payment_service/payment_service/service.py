"""The long-lived objects every request handler uses."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import redis

from .config import Settings
from .database import Database
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
    cache: redis.Redis
    metrics: Metrics
    logger: logging.Logger
    stripe: StripeGateway
    limiter: RateLimiter
    last_checks: dict[str, str] = field(default_factory=dict)  # readiness results, to log only changes
