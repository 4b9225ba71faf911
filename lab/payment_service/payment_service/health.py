"""Liveness, readiness, version and metrics endpoints: unauthenticated, no customer data (keep them internal)."""

from __future__ import annotations

import logging
from typing import Callable

from .metrics import CONTENT_TYPE
from .service import Service
from .web import Request, Response, json_response


def healthz(service: Service, request: Request, params: dict[str, str]) -> Response:
    """The process is alive; no dependency is checked."""
    return json_response(200, {"status": "ok"})


def readyz(service: Service, request: Request, params: dict[str, str]) -> Response:
    """Ready when PostgreSQL answers SELECT 1, Redis answers PING and Stripe an authenticated GET /v1/balance.

    The Stripe result is cached for a few seconds (see stripe_gateway.CHECK_TTL_S).
    """
    checks = {"postgres": _probe(service, "postgres", service.database.ping),
              "redis": _probe(service, "redis", service.cache.ping),
              "stripe": _record(service, "stripe", *service.stripe.check())}
    ready = all(result == "ok" for result in checks.values())
    return json_response(200 if ready else 503, {"status": "ready" if ready else "not-ready", "checks": checks})


def version(service: Service, request: Request, params: dict[str, str]) -> Response:
    """The release this process runs, read from its manifest, and where it runs."""
    return json_response(200, {"name": service.manifest.name, "version": service.manifest.version,
                               "instance": service.settings.instance, "colour": service.settings.colour})


def metrics(service: Service, request: Request, params: dict[str, str]) -> Response:
    """Prometheus text exposition of this process' metrics."""
    return Response(200, service.metrics.render().encode("utf-8"), content_type=CONTENT_TYPE)


def _probe(service: Service, name: str, check: Callable[[], object]) -> str:
    """'ok' or 'error: <exception class>'; details go to the (redacted) log when the result changes."""
    try:
        check()
        result, detail = "ok", ""
    except Exception as exc:  # any failure means not ready
        result, detail = f"error: {type(exc).__name__}", str(exc)
    return _record(service, name, result, detail)


def _record(service: Service, name: str, result: str, detail: str) -> str:
    """Log a check's result when it changed; return it."""
    if service.last_checks.get(name, "ok") != result:
        level = logging.INFO if result == "ok" else logging.WARNING
        service.logger.log(level, "readiness check %s: %s %s", name, result, detail)
    service.last_checks[name] = result
    return result
