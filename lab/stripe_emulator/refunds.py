"""``/v1/refunds``: refund a charge (named directly or through its PaymentIntent), fully or in part."""

from __future__ import annotations

from typing import Any

from . import charges, events, forms, listing, money
from .context import Ctx
from .errors import StripeError, invalid

REASONS = ("duplicate", "fraudulent", "requested_by_customer")
CREATE_PARAMS = ("charge", "payment_intent", "amount", "reason", "metadata")
LIST_PARAMS = ("charge", "payment_intent", "created", "limit", "starting_after", "ending_before")


def _charge_to_refund(ctx: Ctx) -> dict[str, Any]:
    params = ctx.params
    store = ctx.store
    charge_id = forms.get_str(params, "charge")
    intent_id = forms.get_str(params, "payment_intent")
    if not charge_id and not intent_id:
        raise invalid("One of the following params should be provided for this request: payment_intent or charge.")
    if intent_id:
        intent = store.get("payment_intent", intent_id, ctx.mode, label="payment_intent", param="payment_intent", status=400)
        latest = store.lookup(intent["latest_charge"]) if intent["latest_charge"] else None
        if intent["status"] != "succeeded" or latest is None:
            raise invalid("This PaymentIntent does not have a successful charge to refund.", param="payment_intent")
        if charge_id and charge_id != latest["id"]:
            raise invalid(f"The charge {charge_id} does not belong to the PaymentIntent {intent_id}.", param="charge")
        return latest
    assert charge_id is not None
    charge = store.get("charge", charge_id, ctx.mode, param="charge", status=400)
    if charge["status"] != "succeeded":
        raise invalid(f"Charge {charge_id} has not succeeded, so it cannot be refunded.", param="charge")
    return charge


def create(ctx: Ctx) -> dict[str, Any]:
    params = ctx.params
    store = ctx.store
    charge = _charge_to_refund(ctx)
    remaining = charge["amount"] - charge["amount_refunded"]
    amount = forms.get_int(params, "amount", minimum=1)
    reason = forms.get_enum(params, "reason", REASONS)
    metadata = forms.apply_metadata({}, params)
    if remaining <= 0:
        raise StripeError(400, f"Charge {charge['id']} has already been refunded.", code="charge_already_refunded", param="charge")
    if amount is not None and amount > remaining:
        raise invalid(f"Refund amount ({money.fmt(amount, charge['currency'])}) is greater than unrefunded amount on charge "
                      f"({money.fmt(remaining, charge['currency'])})", param="amount")
    amount = remaining if amount is None else amount
    refund_id = store.new_id("re")
    txn = charges.balance_transaction(ctx, "refund", refund_id, -amount, charge["currency"], "REFUND FOR CHARGE")
    refund = {
        "id": refund_id, "object": "refund", "amount": amount, "balance_transaction": txn["id"], "charge": charge["id"],
        "created": ctx.now, "currency": charge["currency"], "customer": charge["customer"], "customer_account": None,
        "destination_details": {"card": {"reference": None, "reference_status": "pending", "reference_type": "acquirer_reference_number",
                                         "type": "refund"}, "type": "card"},
        "metadata": metadata, "payment_intent": charge["payment_intent"], "payment_method": charge["payment_method"],
        "reason": reason, "receipt_number": None, "source_transfer_reversal": None, "status": "succeeded", "transfer_reversal": None,
    }
    store.add(refund, ctx.mode)
    before = store.render(charge)
    charge["amount_refunded"] += amount
    charge["refunded"] = charge["amount_refunded"] >= charge["amount"]
    charges.refresh_refunds(ctx, charge)
    events.emit(ctx, "refund.created", refund)
    events.emit(ctx, "charge.refunded", charge, events.changes(before, charge))
    return store.render(refund)


def retrieve(ctx: Ctx, refund_id: str) -> dict[str, Any]:
    return ctx.store.render(ctx.store.get("refund", refund_id, ctx.mode))


def list_refunds(ctx: Ctx) -> dict[str, Any]:
    charge = forms.get_str(ctx.params, "charge")
    intent = forms.get_str(ctx.params, "payment_intent")
    created = forms.get_created_filter(ctx.params)
    return listing.page(ctx, "refund", "/v1/refunds",
                        lambda r: (not charge or r["charge"] == charge) and (not intent or r["payment_intent"] == intent)
                        and forms.created_matches(r["created"], created))
