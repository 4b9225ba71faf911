"""Liveness, load balancer check, readiness, version and metrics: unauthenticated, no customer data (keep them
internal).

Three checks for three questions. /healthz: is the process alive (a supervisor restarts it if not)?
/healthz/lb: can it serve a request (the process and PostgreSQL, which every request needs)? The load balancer
asks this one, so that a third party's blip (Stripe, Redis, SMTP) never takes every instance out of the backend
at once; those are degraded around instead. /readyz: is every dependency there (the deploy gate before traffic)?
"""

from __future__ import annotations

import logging

from .checks import OK, outcome
from .config import Settings
from .metrics import CONTENT_TYPE
from .service import Service
from .web import Request, Response, json_response


def dependency_names(settings: Settings) -> tuple[str, ...]:
    """What the service depends on, as /readyz and the dependency_up gauge name them (SMTP only when configured)."""
    return ("postgres", "redis", "stripe", *(("smtp",) if settings.smtp else ()))


def healthz(service: Service, request: Request, params: dict[str, str]) -> Response:
    """The process is alive; no dependency is checked."""
    return json_response(200, {"status": "ok"})


def healthz_lb(service: Service, request: Request, params: dict[str, str]) -> Response:
    """Serving when PostgreSQL answers SELECT 1; never asks Stripe, Redis or SMTP (the service degrades around them)."""
    checks = {"postgres": _record(service, "postgres", *outcome(service.database.ping))}
    serving = checks["postgres"] == OK
    return json_response(200 if serving else 503, {"status": "serving" if serving else "not-serving", "checks": checks})


def readyz(service: Service, request: Request, params: dict[str, str]) -> Response:
    """Ready when PostgreSQL answers SELECT 1, Redis PING, Stripe an authenticated GET /v1/balance and, when SMTP is
    configured, the mail server a NOOP. The Stripe and SMTP results are cached for a few seconds."""
    checks = dependency_checks(service)
    ready = all(result == OK for result in checks.values())
    return json_response(200 if ready else 503, {"status": "ready" if ready else "not-ready", "checks": checks})


def version(service: Service, request: Request, params: dict[str, str]) -> Response:
    """The release this process runs, read from its manifest, and where it runs."""
    return json_response(200, {"name": service.manifest.name, "version": service.manifest.version,
                               "instance": service.settings.instance, "colour": service.settings.colour})


def metrics(service: Service, request: Request, params: dict[str, str]) -> Response:
    """Prometheus text exposition of this process' metrics, with the dependency gauges refreshed first."""
    dependency_checks(service)
    return Response(200, service.metrics.render().encode("utf-8"), content_type=CONTENT_TYPE)


def dependency_checks(service: Service) -> dict[str, str]:
    """Every dependency's result ('ok' or 'error: <class>'); sets the dependency_up gauges.

    PostgreSQL and Redis are asked each time (one round trip on loopback); Stripe and SMTP answer from their caches.
    """
    results = {"postgres": outcome(service.database.ping), "redis": outcome(service.redis.ping),
               "stripe": service.stripe.check()}
    if service.mailer is not None:
        results["smtp"] = service.mailer.check()
    checks = {name: _record(service, name, *result) for name, result in results.items()}
    service.metrics.set_dependencies({name: result == OK for name, result in checks.items()})
    return checks


def _record(service: Service, name: str, result: str, detail: str) -> str:
    """Log a check's result when it changed (details go to the redacted log only); return it."""
    if service.last_checks.get(name, OK) != result:
        level = logging.INFO if result == OK else logging.WARNING
        service.logger.log(level, "readiness check %s: %s %s", name, result, detail)
    service.last_checks[name] = result
    return result
