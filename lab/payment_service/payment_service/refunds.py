"""Refunds of stored payments: one Stripe refund per client idempotency key, stored once."""

from __future__ import annotations

from typing import Any

import stripe

from . import access, payment_records, stripe_errors, validation
from .payment_records import REFUNDABLE, Payment, Refund
from .service import Service
from .web import HTTPError, Request, Response, json_response

OPTIONAL = frozenset({"amount"})
# Refunds that took, or may still take, money back: they count against what remains refundable.
OUTSTANDING = ("pending", "requires_action", "succeeded")


def create(service: Service, request: Request, params: dict[str, str]) -> Response:
    """POST /v1/payments/{id}/refunds: 201 with a new refund, 200 with the stored one for a known Idempotency-Key."""
    access.require_api(service, request)
    key = validation.idempotency_key(request)
    amount = _amount(request)
    database = service.database
    payment = payment_records.payment_by(database, "id", params["id"])
    if payment is None:
        raise HTTPError(404, "payment_not_found", "no payment with this id")
    scoped_key = f"refunds:{key}"
    refund_id = validation.derived_id("ref", scoped_key)
    stored = payment_records.refund_by_id(database, refund_id)
    if stored is not None:
        if stored.payment_id != payment.id or amount not in (None, stored.amount):
            raise stripe_errors.key_reused()
        return _answer(200, stored, payment)
    if not service.stripe.configured:
        raise HTTPError(503, "not_configured", "STRIPE_SECRET_KEY is not set: refunds cannot be made")
    _check_refundable(service, payment, amount)
    try:
        refund = service.stripe.create_refund(payment_intent=payment.stripe_payment_intent_id, amount=amount,
                                              metadata={"payment_id": payment.id, "refund_id": refund_id},
                                              idempotency_key=scoped_key)
    except (stripe.IdempotencyError, stripe.InvalidRequestError) as exc:
        return stripe_errors.rejected(exc)
    created = payment_records.insert_refund(database, refund_id, payment.id, str(refund.id), int(refund.amount),
                                            str(refund.status))
    if created is None:  # a concurrent request with the same key stored it first
        return _answer(200, _stored(service, refund_id), payment)
    service.metrics.count_refund()
    if created.status == "succeeded":
        refunded = payment_records.refunded_amount(database, payment.id, ("succeeded",))
        payment_records.advance_status(database, payment.stripe_payment_intent_id,
                                       "refunded" if refunded >= payment.amount else "partially_refunded")
    return _answer(201, created, payment_records.payment_by(database, "id", payment.id) or payment)


def _amount(request: Request) -> int | None:
    """The optional amount; an empty body asks for a refund of what remains."""
    payload: Any = request.json() if request.header("Content-Length") not in ("", "0") else {}
    body = validation.fields(payload, frozenset(), OPTIONAL)
    return None if body.get("amount") is None else validation.amount(body["amount"], minimum=1)


def _check_refundable(service: Service, payment: Payment, amount: int | None) -> None:
    """409 when the payment took no money or was refunded in full, 400 when the amount exceeds what remains."""
    if payment.status not in REFUNDABLE:
        raise HTTPError(409, "payment_not_refundable", f"a payment in status {payment.status} cannot be refunded")
    remaining = payment.amount - payment_records.refunded_amount(service.database, payment.id, OUTSTANDING)
    if remaining <= 0:
        raise HTTPError(409, "payment_not_refundable", "the payment is already refunded in full")
    if amount is not None and amount > remaining:
        raise HTTPError(400, "invalid_amount", f"at most {remaining} can still be refunded")


def _answer(status: int, refund: Refund, payment: Payment) -> Response:
    return json_response(status, {**refund.to_json(), "payment_status": payment.status})


def _stored(service: Service, refund_id: str) -> Refund:
    refund = payment_records.refund_by_id(service.database, refund_id)
    if refund is None:  # the conflict was on the Stripe refund id under another row: should never happen
        raise HTTPError(409, "refund_conflict", "this Stripe refund is already stored under another id")
    return refund
