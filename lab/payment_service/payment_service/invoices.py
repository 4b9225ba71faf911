"""Invoices: a finalized Stripe invoice of one line for a stored customer (Stripe keeps it; nothing is stored here)."""

from __future__ import annotations

import stripe

from . import access, payment_records, stripe_errors, validation
from .service import Service
from .stripe_gateway import InvoiceRequest
from .web import HTTPError, Request, Response, json_response

REQUIRED = frozenset({"customer_id", "amount", "currency", "description"})


def create(service: Service, request: Request, params: dict[str, str]) -> Response:
    """POST /v1/invoices: 201 with Stripe's invoice id, number, status, amount due and hosted page.

    An Idempotency-Key is optional here: with one, a retry reuses every Stripe object the first attempt made.
    """
    access.require_api(service, request)
    key = validation.optional_idempotency_key(request)
    body = validation.fields(request.json(), REQUIRED)
    customer_id = validation.stripe_id(body["customer_id"], "customer_id", "cus_")
    amount = validation.amount(body["amount"])
    currency = validation.currency(body["currency"])
    description = validation.text(body["description"], "description", required=True) or ""
    if not service.stripe.configured:
        raise HTTPError(503, "not_configured", "STRIPE_SECRET_KEY is not set: invoices cannot be made")
    customer = payment_records.customer(service.database, customer_id)
    if customer is None:
        raise HTTPError(400, "customer_not_found", "no customer with this customer_id")
    order = InvoiceRequest(customer_id, customer[0], customer[1], amount, currency, description)
    try:
        invoice = service.stripe.create_invoice(order, f"invoices:{key}" if key else None)
    except (stripe.IdempotencyError, stripe.InvalidRequestError) as exc:
        return stripe_errors.rejected(exc)
    return json_response(201, {"invoice_id": invoice.id, "number": invoice.number, "status": invoice.status,
                               "amount_due": invoice.amount_due, "currency": invoice.currency,
                               "customer_id": customer_id, "stripe_customer_id": _id(invoice.customer),
                               "hosted_invoice_url": getattr(invoice, "hosted_invoice_url", None),
                               "invoice_pdf": getattr(invoice, "invoice_pdf", None)})


def _id(value: object) -> str | None:
    """An expandable field as its id."""
    if isinstance(value, str) or value is None:
        return value
    return str(getattr(value, "id", "")) or None
