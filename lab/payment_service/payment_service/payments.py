"""Payments: a confirmed card PaymentIntent at Stripe per client idempotency key, stored once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
import stripe

from . import access, payment_records, receipts, stripe_errors, stripe_events, validation
from .build_faults import InjectedFailure
from .payment_records import Payment
from .service import Service
from .stripe_gateway import StripeUnavailable
from .web import CARD_ERROR, HTTPError, Request, Response, error_body, json_response

REQUIRED = frozenset({"amount", "currency", "payment_method"})
OPTIONAL = frozenset({"customer_id", "description"})
# PaymentIntent statuses after a confirmation, as the service stores and counts them.
FAILED_STATUSES = frozenset({"requires_payment_method", "canceled"})


@dataclass(frozen=True)
class PaymentOrder:
    """A validated POST /v1/payments body."""

    amount: int
    currency: str
    payment_method: str
    customer_id: str | None
    description: str | None


def validate(payload: Any) -> PaymentOrder:
    """The order of a create request, or a 400 naming the first problem."""
    body = validation.fields(payload, REQUIRED, OPTIONAL)
    customer_id = body.get("customer_id")
    return PaymentOrder(
        amount=validation.amount(body["amount"]),
        currency=validation.currency(body["currency"]),
        payment_method=validation.stripe_id(body["payment_method"], "payment_method", "pm_"),
        customer_id=None if customer_id is None else validation.stripe_id(customer_id, "customer_id", "cus_"),
        description=validation.text(body.get("description"), "description"),
    )


def create(service: Service, request: Request, params: dict[str, str]) -> Response:
    """POST /v1/payments: 201 with a new payment, 200 with the stored one for a known Idempotency-Key,
    402 when the card is declined, 503 when Stripe cannot be reached. A charged payment of a customer gets a receipt."""
    access.require_api(service, request)
    key = validation.idempotency_key(request)
    order = validate(request.json())
    try:
        return _create(service, key, order)
    except (HTTPError, StripeUnavailable):  # a refusal, or Stripe down (counted where the call failed)
        raise
    except psycopg.OperationalError:  # app.py answers 503
        service.metrics.count_payment("error", order.amount, "backend_unavailable")
        raise
    except Exception:  # app.py answers 500: the service's own failure is a failed payment too
        service.metrics.count_payment("error", order.amount, "internal_error")
        raise


def _create(service: Service, key: str, order: PaymentOrder) -> Response:
    database = service.database
    stored = payment_records.payment_by(database, "idempotency_key", key)
    if stored is not None:
        return _replay(stored, order)
    if not service.stripe.configured:
        raise HTTPError(503, "not_configured", "STRIPE_SECRET_KEY is not set: payments cannot be made")
    customer = payment_records.customer(database, order.customer_id) if order.customer_id else None
    if order.customer_id and customer is None:
        raise HTTPError(400, "customer_not_found", "no customer with this customer_id")
    if service.regression is not None and service.regression.strikes(order.amount):
        raise InjectedFailure("payment-regression: a payment of 10.00 or more failed before Stripe was called")
    scoped_key = f"payments:{key}"
    payment_id = validation.derived_id("pay", scoped_key)
    metadata = {"payment_id": payment_id, **({"customer_id": order.customer_id} if order.customer_id else {})}
    try:
        intent = service.stripe.create_payment_intent(
            amount=order.amount, currency=order.currency, payment_method=order.payment_method, metadata=metadata,
            description=order.description, idempotency_key=scoped_key)
    except stripe.CardError as exc:
        return _declined(service, exc, payment_id, order, key)
    except (stripe.IdempotencyError, stripe.InvalidRequestError) as exc:
        service.metrics.count_payment("error", order.amount, "stripe_rejected")
        return stripe_errors.rejected(exc)
    except StripeUnavailable:
        service.metrics.count_payment("error", order.amount, "stripe_unavailable")
        raise
    status = "failed" if intent.status in FAILED_STATUSES else str(intent.status)
    created = payment_records.insert_payment(database, payment_id, str(intent.id), order.customer_id, order.amount,
                                             order.currency, status, key)
    if created is None:  # a concurrent request with the same key stored it first: Stripe replayed the same intent
        return _replay(_stored(service, key), order)
    service.metrics.count_payment(_outcome(status), order.amount, _decline_code(intent))
    if customer is not None and created.status == "succeeded":
        receipts.send(service, created, customer[0])
    return json_response(201, created.to_json())


def fetch(service: Service, request: Request, params: dict[str, str]) -> Response:
    """GET /v1/payments/{id}: 200 with the payment and the types of the Stripe events received for its
    PaymentIntent (oldest first), or 404."""
    access.require_api(service, request)
    payment = payment_records.payment_by(service.database, "id", params["id"])
    if payment is None:
        raise HTTPError(404, "payment_not_found", "no payment with this id")
    events = stripe_events.event_types_of_intent(service.database, payment.stripe_payment_intent_id)
    return json_response(200, {**payment.to_json(), "webhook_events": events})


def fetch_by_intent(service: Service, request: Request, params: dict[str, str]) -> Response:
    """GET /v1/payments/by-intent/{intent_id}: the stored payment, else what received webhook events tell, else 404.

    A PaymentIntent made outside the service (a probe, the Dashboard) is known only through its events.
    """
    access.require_api(service, request)
    intent_id = params["intent_id"]
    payment = payment_records.payment_by(service.database, "stripe_payment_intent_id", intent_id)
    if payment is not None:
        return json_response(200, {"source": "database", **payment.to_json()})
    summary = stripe_events.intent_summary(service.database, intent_id)
    if summary is None:
        raise HTTPError(404, "payment_not_found", "no payment and no received event for this PaymentIntent")
    return json_response(200, summary)


def _replay(stored: Payment, order: PaymentOrder) -> Response:
    """The stored answer to a repeated key; a key reused for another payment is a client bug, never a charge."""
    if (stored.amount, stored.currency, stored.customer_id) != (order.amount, order.currency, order.customer_id):
        raise stripe_errors.key_reused()
    return json_response(200, stored.to_json())


def _stored(service: Service, key: str) -> Payment:
    payment = payment_records.payment_by(service.database, "idempotency_key", key)
    if payment is None:  # the conflict was on the PaymentIntent id under another key: should never happen
        raise HTTPError(409, "payment_conflict", "this PaymentIntent is already stored under another Idempotency-Key")
    return payment


def _declined(service: Service, exc: stripe.CardError, payment_id: str, order: PaymentOrder, key: str) -> Response:
    """402 with Stripe's decline details; the failed attempt is stored when Stripe names its PaymentIntent."""
    error = exc.json_body.get("error", {}) if isinstance(exc.json_body, dict) else {}
    intent = error.get("payment_intent") or {}
    intent_id = intent.get("id") if isinstance(intent, dict) else None
    stored_id = None
    reason = error.get("decline_code") or exc.code
    if isinstance(intent_id, str) and intent_id:
        created = payment_records.insert_payment(service.database, payment_id, intent_id, order.customer_id,
                                                 order.amount, order.currency, "failed", key)
        if created is not None:
            service.metrics.count_payment("failed", order.amount, reason)
        stored_id = payment_id
    else:
        service.metrics.count_payment("failed", order.amount, reason)
        service.logger.warning("card declined without a PaymentIntent in Stripe's answer (request %s): not stored",
                               exc.request_id)
    return json_response(402, error_body(CARD_ERROR, "card_declined", error.get("message") or "the card was declined",
                                         stripe_code=exc.code, decline_code=error.get("decline_code"),
                                         stripe_request_id=exc.request_id, payment_id=stored_id,
                                         stripe_payment_intent_id=intent_id))


def _decline_code(intent: Any) -> str | None:
    """The issuer's decline code of an intent that failed without a CardError (its last_payment_error), if any."""
    error = getattr(intent, "last_payment_error", None)
    code = getattr(error, "decline_code", None) or getattr(error, "code", None)
    return code if isinstance(code, str) else None


def _outcome(status: str) -> str:
    if status in ("succeeded", "failed"):
        return status
    return "pending"
