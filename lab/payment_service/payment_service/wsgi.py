"""WSGI entry point for gunicorn: payment_service.wsgi:application."""

from __future__ import annotations

import os
import sys
from typing import Mapping

import redis

from .app import PaymentApp, build_router
from .build_faults import KNOWN as KNOWN_FAULTS
from .build_faults import PAYMENT_REGRESSION, PaymentRegression, load_build_faults
from .cache import CustomerCache
from .config import ConfigError, load_settings
from .database import Database
from .health import dependency_names
from .logs import make_logger
from .mailer import Mailer
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
    faults = load_build_faults()
    logger = make_logger(settings.secret_values())
    for fault in sorted(faults):
        logger.warning("BUILD FAULT %s: %s; this release exists to test smoke checks and must not serve traffic",
                       fault, KNOWN_FAULTS[fault])
    if settings.test_slow_ms:
        logger.warning("fault injection: GET /v1/customers/{id} is delayed by %d ms", settings.test_slow_ms)
    if not settings.hash_salt:
        logger.warning("HASH_SALT is not set: POST /v1/customers answers 503")
    if not settings.stripe_secret_key:
        logger.warning("STRIPE_SECRET_KEY is not set: payment endpoints answer 503 and the service is not ready")
    if not settings.stripe_webhook_secret:
        logger.warning("STRIPE_WEBHOOK_SECRET is not set: POST /webhooks/stripe answers 503")
    if settings.smtp:
        logger.info("receipts are sent from %s through %s:%d%s", settings.receipt_from, settings.smtp.host,
                    settings.smtp.port, " with STARTTLS" if settings.smtp.starttls else "")
    else:
        logger.info("SMTP_URL is not set: no receipt is sent")
    readiness_redis = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=REDIS_TIMEOUT_S,
                                           socket_timeout=REDIS_TIMEOUT_S)
    metrics = Metrics(manifest.version, settings.instance, settings.colour, dependency_names(settings))
    service = Service(settings, manifest, Database(settings.database_url, metrics), readiness_redis, metrics, logger,
                      StripeGateway(settings), RateLimiter(settings.redis_url, logger, metrics),
                      CustomerCache(settings.redis_url, manifest.version, logger, metrics),
                      Mailer(settings.smtp, logger, metrics) if settings.smtp else None, faults,
                      PaymentRegression() if PAYMENT_REGRESSION in faults else None)
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
