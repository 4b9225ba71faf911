"""Charges (made by confirming a PaymentIntent), their balance transactions, and the balance they add up to."""

from __future__ import annotations

from typing import Any

from . import cards, forms, listing
from .context import Ctx

LIST_PARAMS = ("customer", "payment_intent", "created", "limit", "starting_after", "ending_before")
REFUNDS_ON_CHARGE = 10  # the first page of refunds embedded in a charge, like Stripe's list


STATEMENT_DESCRIPTOR = "PAYMENTS LAB"


def balance_transaction(ctx: Ctx, kind: str, source: str, amount: int, currency: str, description: str | None) -> dict[str, Any]:
    """A balance transaction for a charge (positive) or a refund (negative); the emulator takes no fees."""
    txn = {
        "id": ctx.store.new_id("txn"), "object": "balance_transaction", "amount": amount, "available_on": ctx.now + 2 * 86400,
        "balance_type": "payments", "created": ctx.now, "currency": currency, "description": description, "exchange_rate": None,
        "fee": 0, "fee_details": [], "net": amount, "reporting_category": kind, "source": source, "status": "pending", "type": kind,
    }
    return ctx.store.add(txn, ctx.mode)


def create_for(ctx: Ctx, pi: dict[str, Any], pm: dict[str, Any]) -> dict[str, Any]:
    """The charge of one confirmation attempt: succeeded with a balance transaction, or failed with the card's decline."""
    decline = cards.decline_of(pm)
    store = ctx.store
    charge_id = store.new_id("ch")
    paid = decline is None
    txn = balance_transaction(ctx, "charge", charge_id, pi["amount"], pi["currency"], pi["description"]) if paid else None
    charge = {
        "id": charge_id, "object": "charge", "amount": pi["amount"], "amount_captured": pi["amount"] if paid else 0,
        "amount_refunded": 0, "application": None, "application_fee": None, "application_fee_amount": None,
        "balance_transaction": txn["id"] if txn else None, "billing_details": pm["billing_details"],
        "calculated_statement_descriptor": STATEMENT_DESCRIPTOR, "captured": paid, "created": ctx.now,
        "currency": pi["currency"], "customer": pi["customer"], "description": pi["description"], "disputed": False,
        "failure_balance_transaction": None, "failure_code": None if paid else decline.code,
        "failure_message": None if paid else decline.message, "fraud_details": {}, "livemode": ctx.livemode,
        "metadata": dict(pi["metadata"]), "on_behalf_of": None, "outcome": cards.outcome(decline), "paid": paid,
        "payment_intent": pi["id"], "payment_method": pm["id"], "payment_method_details": cards.charge_details(pm, pi["amount"]),
        "receipt_email": pi["receipt_email"], "receipt_number": None, "receipt_url": None, "refunded": False,
        "refunds": listing.list_object(f"/v1/charges/{charge_id}/refunds", [], False), "review": None, "shipping": None,
        "source": None, "source_transfer": None, "statement_descriptor": None, "statement_descriptor_suffix": None,
        "status": "succeeded" if paid else "failed", "transfer_data": None, "transfer_group": None,
    }
    return store.add(charge, ctx.mode)


def refresh_refunds(ctx: Ctx, charge: dict[str, Any]) -> None:
    """Keep the charge's embedded refund list (newest first) in step with its refunds."""
    refunds = ctx.store.find("refund", ctx.mode, lambda r: r["charge"] == charge["id"])
    charge["refunds"] = listing.list_object(f"/v1/charges/{charge['id']}/refunds",
                                            [ctx.store.render(r) for r in refunds[:REFUNDS_ON_CHARGE]],
                                            len(refunds) > REFUNDS_ON_CHARGE)


def retrieve(ctx: Ctx, charge_id: str) -> dict[str, Any]:
    return ctx.store.render(ctx.store.get("charge", charge_id, ctx.mode))


def list_charges(ctx: Ctx) -> dict[str, Any]:
    customer = forms.get_str(ctx.params, "customer")
    intent = forms.get_str(ctx.params, "payment_intent")
    created = forms.get_created_filter(ctx.params)
    return listing.page(ctx, "charge", "/v1/charges",
                        lambda c: (not customer or c["customer"] == customer) and (not intent or c["payment_intent"] == intent)
                        and forms.created_matches(c["created"], created))


def retrieve_balance_transaction(ctx: Ctx, txn_id: str) -> dict[str, Any]:
    return ctx.store.render(ctx.store.get("balance_transaction", txn_id, ctx.mode))


def retrieve_payment_method(ctx: Ctx, pm_id: str) -> dict[str, Any]:
    return ctx.store.render(ctx.store.get("payment_method", pm_id, ctx.mode, label="PaymentMethod"))


def balance(ctx: Ctx) -> dict[str, Any]:
    """The balance: every charge and refund is still pending (the emulator runs no payout schedule)."""
    totals: dict[str, int] = {}
    for txn in ctx.store.find("balance_transaction", ctx.mode):
        totals[txn["currency"]] = totals.get(txn["currency"], 0) + txn["net"]
    currencies = sorted(totals) or ["usd"]
    return {
        "object": "balance",
        "available": [{"amount": 0, "currency": c, "source_types": {"card": 0}} for c in currencies],
        "connect_reserved": [{"amount": 0, "currency": c} for c in currencies],
        "livemode": ctx.livemode,
        "pending": [{"amount": totals.get(c, 0), "currency": c, "source_types": {"card": totals.get(c, 0)}} for c in currencies],
    }
