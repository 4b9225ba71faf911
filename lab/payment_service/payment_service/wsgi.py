"""WSGI entry point for gunicorn: payment_service.wsgi:application."""

from __future__ import annotations

import os
import sys
from typing import Mapping

import redis

from .app import PaymentApp, build_router
from .config import ConfigError, load_settings
from .database import Database
from .logs import make_logger
from .manifest import load_manifest
from .metrics import Metrics
from .ratelimit import RateLimiter
from .service import Service
from .stripe_gateway import StripeGateway

EX_CONFIG = 78  # sysexits.h: configuration error; a supervisor should not restart-loop on it
REDIS_TIMEOUT_S = 2


def create_application(environ: Mapping[str, str]) -> PaymentApp:
    """Check the configuration and build the application; raises ConfigError."""
    settings = load_settings(environ)
    manifest = load_manifest()
    logger = make_logger(settings.secret_values())
    if settings.test_slow_ms:
        logger.warning("fault injection: GET /v1/customers/{id} is delayed by %d ms", settings.test_slow_ms)
    if not settings.hash_salt:
        logger.warning("HASH_SALT is not set: POST /v1/customers answers 503")
    if not settings.stripe_secret_key:
        logger.warning("STRIPE_SECRET_KEY is not set: payment endpoints answer 503 and the service is not ready")
    if not settings.stripe_webhook_secret:
        logger.warning("STRIPE_WEBHOOK_SECRET is not set: POST /webhooks/stripe answers 503")
    cache = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=REDIS_TIMEOUT_S,
                                 socket_timeout=REDIS_TIMEOUT_S)
    metrics = Metrics(manifest.version, settings.instance, settings.colour)
    limiter = RateLimiter(settings.redis_url, settings.rate_limit_per_minute, logger)
    service = Service(settings, manifest, Database(settings.database_url), cache, metrics, logger,
                      StripeGateway(settings), limiter)
    logger.info("%s %s starting as %s (%s); Stripe API at %s", manifest.name, manifest.version, settings.instance,
                settings.colour, settings.stripe_api_base)
    return PaymentApp(service, build_router())


def _application() -> PaymentApp:
    try:
        return create_application(os.environ)
    except ConfigError as error:
        print(f"payment-service: configuration error: {error}", file=sys.stderr, flush=True)
        raise SystemExit(EX_CONFIG) from None


application = _application()
