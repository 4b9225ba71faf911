"""The WSGI application: routing, error handling, CORS, security headers and request metrics."""

from __future__ import annotations

import time
from typing import Any, Callable, Iterable, Mapping

import psycopg
import redis

from . import admin, cors, customers, health, invoices, payments, refunds, webhooks
from .build_faults import NO_SECURITY_HEADERS
from .routes import UNMATCHED, Match, Router
from .service import Service
from .stripe_gateway import StripeKnownDown, StripeNotConfigured, StripeUnavailable
from .web import SECURITY_HEADERS, HTTPError, Request, Response, error_response

Handler = Callable[[Service, Request, dict[str, str]], Response]
StartResponse = Callable[[str, list[tuple[str, str]]], Any]
UNAVAILABLE = (psycopg.OperationalError, redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)
STRIPE_RETRY_AFTER_S = "5"
MAIL_DRAIN_S = 5.0  # how long a stopping worker waits for queued emails


def build_router() -> Router[Handler]:
    """Every route of the service."""
    router: Router[Handler] = Router()
    router.add("/healthz", {"GET": health.healthz})
    router.add("/healthz/lb", {"GET": health.healthz_lb})
    router.add("/readyz", {"GET": health.readyz})
    router.add("/version", {"GET": health.version})
    router.add("/metrics", {"GET": health.metrics})
    router.add("/v1/customers", {"POST": customers.create})
    router.add("/v1/customers/{id}", {"GET": customers.fetch})
    router.add("/v1/payments", {"POST": payments.create})
    router.add("/v1/payments/by-intent/{intent_id}", {"GET": payments.fetch_by_intent})
    router.add("/v1/payments/{id}", {"GET": payments.fetch})
    router.add("/v1/payments/{id}/refunds", {"POST": refunds.create})
    router.add("/v1/invoices", {"POST": invoices.create})
    router.add("/webhooks/stripe", {"POST": webhooks.receive})
    router.add("/admin/stats", {"GET": admin.stats})
    return router


class PaymentApp:
    """A WSGI callable around the router."""

    def __init__(self, service: Service, router: Router[Handler]) -> None:
        self.service = service
        self.router = router
        self.identity = [("X-Served-By", service.settings.instance),
                         ("X-Service-Version", service.manifest.version)]
        self.security_headers = () if NO_SECURITY_HEADERS in service.faults else SECURITY_HEADERS

    def __call__(self, environ: Mapping[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        started = time.monotonic()
        request = Request(environ)
        match = self.router.resolve(request.method, request.path)
        response = self.respond(request, match)
        self.service.metrics.observe_request(request.method, match.template, response.status,
                                             time.monotonic() - started)
        headers = [*self.security_headers, *self.identity, *response.headers]
        if not cors.is_preflight(request):  # a preflight answer carries its own CORS headers, or none
            headers += cors.headers(self.service.settings, request, match.template)
        if response.status != 204:  # a 204 carries neither a body nor its headers
            headers = [("Content-Type", response.content_type), ("Content-Length", str(len(response.body))), *headers]
        start_response(response.status_line(), headers)
        return [] if request.method == "HEAD" or response.status == 204 else [response.body]

    def respond(self, request: Request, match: Match[Handler]) -> Response:
        """The handler's response, or a JSON error that carries no traceback and no secret."""
        try:
            return self.dispatch(request, match)
        except HTTPError as error:
            return error_response(error)
        except UNAVAILABLE as exc:
            self.service.logger.warning("%s %s: backing service unavailable: %s: %s",
                                        request.method, match.template, type(exc).__name__, exc)
            return error_response(HTTPError(503, "service_unavailable", "a backing service is unavailable",
                                            [("Retry-After", "1")]))
        except StripeUnavailable as exc:
            if not isinstance(exc, StripeKnownDown):  # known down: the check's change was logged once already
                self.service.logger.warning("%s %s: Stripe unavailable after retries: %s",
                                            request.method, match.template, exc)
            return error_response(HTTPError(503, "stripe_unavailable", "Stripe cannot be reached, retry later",
                                            [("Retry-After", STRIPE_RETRY_AFTER_S)]))
        except StripeNotConfigured:
            return error_response(HTTPError(503, "not_configured", "STRIPE_SECRET_KEY is not set"))
        except Exception:  # the last line of defence: log the traceback, answer a bare 500
            self.service.logger.exception("%s %s: unhandled error", request.method, match.template)
            return error_response(HTTPError(500, "internal_error", "internal error"))

    def close(self) -> None:
        """Called when the worker stops (gunicorn.conf.py worker_exit): send what the mailer still holds."""
        if self.service.mailer is not None:
            self.service.mailer.drain(MAIL_DRAIN_S)

    def dispatch(self, request: Request, match: Match[Handler]) -> Response:
        """Call the matched handler, answer a CORS preflight, or raise 404 / 405."""
        if match.template == UNMATCHED:
            raise HTTPError(404, "not_found", "no such route")
        if cors.is_preflight(request):
            return cors.preflight(self.service.settings, request, match)
        if match.handler is None:
            allowed = ", ".join(match.allowed)
            raise HTTPError(405, "method_not_allowed", f"allowed methods: {allowed}", [("Allow", allowed)])
        return match.handler(self.service, request, match.params)
