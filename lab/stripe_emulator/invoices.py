"""``/v1/invoices`` and ``/v1/invoiceitems``: one-off invoices built from invoice items, finalized and paid by card.

Lifecycle: draft (items may be added) -> finalize -> open (numbered, amount due fixed) -> pay -> paid. A finalized
invoice with nothing due is paid at once, as in Stripe. Paying charges the card through a PaymentIntent.
"""

from __future__ import annotations

from typing import Any

from . import cards, events, forms, listing, money, payment_intents
from .context import Ctx
from .errors import StripeError, invalid, missing_param

INVOICE_CREATE_PARAMS = ("customer", "auto_advance", "collection_method", "currency", "description", "metadata", "days_until_due",
                         "due_date", "pending_invoice_items_behavior", "default_payment_method")
INVOICE_LIST_PARAMS = ("customer", "status", "collection_method", "created", "limit", "starting_after", "ending_before")
FINALIZE_PARAMS = ("auto_advance",)
PAY_PARAMS = ("payment_method", "paid_out_of_band", "off_session")
ITEM_CREATE_PARAMS = ("customer", "amount", "currency", "invoice", "description", "metadata")
ITEM_LIST_PARAMS = ("customer", "invoice", "pending", "created", "limit", "starting_after", "ending_before")
LINES_PARAMS = ("limit", "starting_after", "ending_before")
STATUSES = ("draft", "open", "paid", "uncollectible", "void")
NEXT_ATTEMPT_DELAY_S = 3600  # Stripe attempts an auto-advancing invoice about an hour after finalizing it


def _customer(ctx: Ctx, params: dict[str, Any]) -> dict[str, Any]:
    customer_id = forms.get_str(params, "customer", required=True)
    assert customer_id is not None
    return ctx.store.get("customer", customer_id, ctx.mode, param="customer", status=400)


# invoice items -------------------------------------------------------------------------------------------------------
def create_item(ctx: Ctx) -> dict[str, Any]:
    params = ctx.params
    store = ctx.store
    customer = _customer(ctx, params)
    invoice_id = forms.get_str(params, "invoice")
    invoice = store.get("invoice", invoice_id, ctx.mode, param="invoice", status=400) if invoice_id else None
    currency = money.currency(params, required=False) or (invoice["currency"] if invoice else customer["currency"])
    if currency is None:
        raise missing_param("currency")
    amount = forms.get_int(params, "amount", required=True, minimum=-money.MAX_AMOUNT, maximum=money.MAX_AMOUNT)
    assert amount is not None
    if invoice is not None:
        if invoice["customer"] != customer["id"]:
            raise invalid(f"The invoice {invoice['id']} belongs to another customer than {customer['id']}.", param="invoice")
        if invoice["status"] != "draft":
            raise invalid(f"You can only add invoice items to draft invoices; invoice {invoice['id']} is {invoice['status']}.",
                          param="invoice", code="invoice_not_editable")
        if invoice["currency"] != currency:
            raise invalid(f"The currency of the invoice item ({currency}) must match the invoice's ({invoice['currency']}).",
                          param="currency")
    item = {
        "id": store.new_id("ii"), "object": "invoiceitem", "amount": amount, "currency": currency, "customer": customer["id"],
        "customer_account": None, "date": ctx.now, "description": forms.get_str(params, "description") or None,
        "discountable": True, "discounts": [], "invoice": invoice["id"] if invoice else None, "livemode": ctx.livemode,
        "metadata": forms.apply_metadata({}, params), "net_amount": amount, "parent": None,
        "period": {"end": ctx.now, "start": ctx.now}, "pricing": None, "proration": False, "quantity": 1, "quantity_decimal": "1",
        "tax_rates": [], "test_clock": None,
    }
    store.add(item, ctx.mode)
    events.emit(ctx, "invoiceitem.created", item)
    if invoice is not None:
        _attach(ctx, invoice, [item])
    return store.render(item)


def retrieve_item(ctx: Ctx, item_id: str) -> dict[str, Any]:
    return ctx.store.render(ctx.store.get("invoiceitem", item_id, ctx.mode))


def delete_item(ctx: Ctx, item_id: str) -> dict[str, Any]:
    store = ctx.store
    item = store.get("invoiceitem", item_id, ctx.mode)
    invoice = store.lookup(item["invoice"]) if item["invoice"] else None
    if invoice is not None and invoice["status"] != "draft":
        raise invalid("Invoice items on a finalized invoice cannot be deleted.", code="invoice_not_editable")
    store.remove(item_id)
    events.emit(ctx, "invoiceitem.deleted", item)
    if invoice is not None:
        before = store.render(invoice)
        invoice["_items"] = [i for i in invoice["_items"] if i != item_id]
        _recompute(ctx, invoice)
        events.emit(ctx, "invoice.updated", invoice, events.changes(before, invoice))
    return {"id": item_id, "object": "invoiceitem", "deleted": True}


def list_items(ctx: Ctx) -> dict[str, Any]:
    customer = forms.get_str(ctx.params, "customer")
    invoice = forms.get_str(ctx.params, "invoice")
    pending = forms.get_bool(ctx.params, "pending")
    created = forms.get_created_filter(ctx.params)
    return listing.page(ctx, "invoiceitem", "/v1/invoiceitems",
                        lambda i: (not customer or i["customer"] == customer) and (not invoice or i["invoice"] == invoice)
                        and (pending is None or (i["invoice"] is None) == pending) and forms.created_matches(i["date"], created))


# invoices ------------------------------------------------------------------------------------------------------------
def _line(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "il_" + item["id"][3:], "object": "line_item", "amount": item["amount"], "currency": item["currency"],
        "description": item["description"], "discount_amounts": [], "discountable": True, "discounts": [], "invoice": item["invoice"],
        "livemode": item["livemode"], "metadata": dict(item["metadata"]),
        "parent": {"invoice_item_details": {"invoice_item": item["id"], "proration": False, "proration_details": {"credited_items": None},
                                            "subscription": None},
                   "subscription_item_details": None, "type": "invoice_item_details"},
        "period": dict(item["period"]), "pretax_credit_amounts": [], "pricing": None, "quantity": 1, "quantity_decimal": "1",
        "subscription": None, "subtotal": item["amount"], "taxes": [],
    }


def _recompute(ctx: Ctx, invoice: dict[str, Any]) -> None:
    """Totals and the first page of lines from the invoice's items (only while it is a draft)."""
    items = [ctx.store.lookup(i) for i in invoice["_items"]]
    lines = [_line(i) for i in items if i is not None]
    total = sum(line["amount"] for line in lines)
    invoice.update(subtotal=total, subtotal_excluding_tax=total, total=total, total_excluding_tax=total, amount_due=max(total, 0),
                   amount_remaining=max(total, 0) - invoice["amount_paid"],
                   lines=listing.list_object(f"/v1/invoices/{invoice['id']}/lines", lines[:10], len(lines) > 10))


def _attach(ctx: Ctx, invoice: dict[str, Any], items: list[dict[str, Any]]) -> None:
    before = ctx.store.render(invoice)
    for item in items:
        item["invoice"] = invoice["id"]
        invoice["_items"].append(item["id"])
    _recompute(ctx, invoice)
    events.emit(ctx, "invoice.updated", invoice, events.changes(before, invoice))


def create(ctx: Ctx) -> dict[str, Any]:
    params = ctx.params
    store = ctx.store
    customer = _customer(ctx, params)
    method = forms.get_enum(params, "collection_method", ("charge_automatically", "send_invoice")) or "charge_automatically"
    days = forms.get_int(params, "days_until_due", minimum=0, maximum=730)
    due_date = forms.get_int(params, "due_date", minimum=0)
    if method == "send_invoice" and days is None and due_date is None:
        raise missing_param("days_until_due")
    if method == "charge_automatically" and (days is not None or due_date is not None):
        raise invalid("Invoices with collection_method=charge_automatically cannot have a due date.",
                      param="days_until_due" if days is not None else "due_date")
    auto_advance = forms.get_bool(params, "auto_advance")
    currency = money.currency(params, required=False) or customer["currency"] or "usd"
    behavior = forms.get_enum(params, "pending_invoice_items_behavior", ("exclude", "include")) or "exclude"
    default_pm = forms.get_str(params, "default_payment_method")
    pm = cards.resolve(ctx, default_pm, param="default_payment_method", customer=customer["id"]) if default_pm else None
    invoice = {
        "id": store.new_id("in"), "object": "invoice", "account_country": "US", "account_name": "Payments Lab", "account_tax_ids": None,
        "amount_due": 0, "amount_overpaid": 0, "amount_paid": 0, "amount_remaining": 0, "amount_shipping": 0, "application": None,
        "attempt_count": 0, "attempted": False, "auto_advance": bool(auto_advance),
        "automatic_tax": {"disabled_reason": None, "enabled": False, "liability": None, "provider": None, "status": None},
        "automatically_finalizes_at": None, "billing_reason": "manual", "collection_method": method, "created": ctx.now,
        "currency": currency, "custom_fields": None, "customer": customer["id"], "customer_account": None,
        "customer_address": customer["address"], "customer_email": customer["email"], "customer_name": customer["name"],
        "customer_phone": customer["phone"], "customer_shipping": customer["shipping"], "customer_tax_exempt": customer["tax_exempt"],
        "customer_tax_ids": [], "default_payment_method": pm["id"] if pm else None, "default_source": None, "default_tax_rates": [],
        "description": forms.get_str(params, "description") or None, "discounts": [],
        "due_date": due_date if due_date is not None else (ctx.now + days * 86400 if days is not None else None),
        "effective_at": None, "ending_balance": None, "footer": None, "from_invoice": None, "hosted_invoice_url": None,
        "issuer": {"type": "self"}, "invoice_pdf": None, "last_finalization_error": None, "latest_revision": None, "lines": None,
        "livemode": ctx.livemode, "metadata": forms.apply_metadata({}, params), "next_payment_attempt": None, "number": None,
        "on_behalf_of": None, "parent": None,
        "payment_settings": {"default_mandate": None, "payment_method_options": None, "payment_method_types": None},
        "period_end": ctx.now, "period_start": ctx.now, "post_payment_credit_notes_amount": 0, "pre_payment_credit_notes_amount": 0,
        "receipt_number": None,
        "rendering": {"amount_tax_display": None, "pdf": {"page_size": "auto"}, "template": None, "template_version": None},
        "shipping_cost": None, "shipping_details": None, "starting_balance": 0, "statement_descriptor": None, "status": "draft",
        "status_transitions": {"finalized_at": None, "marked_uncollectible_at": None, "paid_at": None, "voided_at": None},
        "subscription": None, "subtotal": 0, "subtotal_excluding_tax": 0, "test_clock": None, "total": 0, "total_discount_amounts": [],
        "total_excluding_tax": 0, "total_pretax_credit_amounts": [], "total_taxes": [], "webhooks_delivered_at": None,
        "_items": [],
    }
    if behavior == "include":
        pending = store.find("invoiceitem", ctx.mode, lambda i: i["customer"] == customer["id"] and i["invoice"] is None
                             and i["currency"] == currency)
        for item in reversed(pending):
            item["invoice"] = invoice["id"]
            invoice["_items"].append(item["id"])
    _recompute(ctx, invoice)
    store.add(invoice, ctx.mode)
    events.emit(ctx, "invoice.created", invoice)
    return store.render(invoice)


def retrieve(ctx: Ctx, invoice_id: str) -> dict[str, Any]:
    return ctx.store.render(ctx.store.get("invoice", invoice_id, ctx.mode))


def list_invoices(ctx: Ctx) -> dict[str, Any]:
    customer = forms.get_str(ctx.params, "customer")
    status = forms.get_enum(ctx.params, "status", STATUSES)
    method = forms.get_enum(ctx.params, "collection_method", ("charge_automatically", "send_invoice"))
    created = forms.get_created_filter(ctx.params)
    return listing.page(ctx, "invoice", "/v1/invoices",
                        lambda i: (not customer or i["customer"] == customer) and (not status or i["status"] == status)
                        and (not method or i["collection_method"] == method) and forms.created_matches(i["created"], created))


def list_lines(ctx: Ctx, invoice_id: str) -> dict[str, Any]:
    invoice = ctx.store.get("invoice", invoice_id, ctx.mode)
    wanted = set(invoice["_items"])
    # Line ids are the item ids with an il_ prefix: cursors name lines, the listing walks items.
    for cursor in ("starting_after", "ending_before"):
        value = ctx.params.get(cursor)
        if isinstance(value, str) and value.startswith("il_"):
            ctx.params[cursor] = "ii_" + value[3:]
    return listing.page(ctx, "invoiceitem", f"/v1/invoices/{invoice_id}/lines", lambda i: i["id"] in wanted, render=_line,
                        oldest_first=True)


def _finalize(ctx: Ctx, invoice: dict[str, Any], auto_advance: bool | None) -> None:
    store = ctx.store
    customer = store.lookup(invoice["customer"])
    assert customer is not None
    before = store.render(invoice)
    if auto_advance is not None:
        invoice["auto_advance"] = auto_advance
    sequence = customer["next_invoice_sequence"]
    customer["next_invoice_sequence"] = sequence + 1
    customer["currency"] = customer["currency"] or invoice["currency"]
    invoice.update(status="open", number=f"{customer['invoice_prefix']}-{sequence:04d}", effective_at=ctx.now, ending_balance=0,
                   customer_address=customer["address"], customer_email=customer["email"], customer_name=customer["name"],
                   customer_phone=customer["phone"])
    invoice["status_transitions"]["finalized_at"] = ctx.now
    if invoice["auto_advance"] and invoice["collection_method"] == "charge_automatically" and invoice["amount_due"] > 0:
        invoice["next_payment_attempt"] = ctx.now + NEXT_ATTEMPT_DELAY_S
    events.emit(ctx, "invoice.finalized", invoice, events.changes(before, invoice))
    if invoice["amount_due"] == 0:
        _mark_paid(ctx, invoice, 0)


def _mark_paid(ctx: Ctx, invoice: dict[str, Any], amount: int) -> None:
    invoice.update(status="paid", amount_paid=amount, amount_remaining=0, next_payment_attempt=None)
    invoice["status_transitions"]["paid_at"] = ctx.now
    events.emit(ctx, "invoice.paid", invoice)
    events.emit(ctx, "invoice.payment_succeeded", invoice)


def finalize(ctx: Ctx, invoice_id: str) -> dict[str, Any]:
    invoice = ctx.store.get("invoice", invoice_id, ctx.mode)
    auto_advance = forms.get_bool(ctx.params, "auto_advance")
    if invoice["status"] != "draft":
        raise invalid("This invoice is already finalized, you can't re-finalize a non-draft invoice.", code="invoice_not_editable")
    _finalize(ctx, invoice, auto_advance)
    return ctx.store.render(invoice)


def pay(ctx: Ctx, invoice_id: str) -> dict[str, Any]:
    """Pay an open invoice (a draft is finalized first) by card, or record it as paid out of band."""
    params = ctx.params
    store = ctx.store
    invoice = store.get("invoice", invoice_id, ctx.mode)
    out_of_band = forms.get_bool(params, "paid_out_of_band") or False
    forms.get_bool(params, "off_session")
    pm_param = forms.get_str(params, "payment_method")
    if invoice["status"] == "paid":
        raise invalid("Invoice is already paid")
    if invoice["status"] != "draft" and invoice["status"] != "open":
        raise invalid(f"You can only pay an open invoice; this one is {invoice['status']}.", code="invoice_not_editable")
    customer = store.lookup(invoice["customer"])
    assert customer is not None
    pm_id = pm_param or invoice["default_payment_method"] or customer["invoice_settings"]["default_payment_method"]
    if not out_of_band and not pm_id and invoice["amount_due"] > 0:
        raise invalid("This customer has no attached payment source or default payment method. Please consider adding a default "
                      "payment method.")
    pm = cards.resolve(ctx, pm_id, customer=customer["id"]) if pm_id and not out_of_band else None
    if invoice["status"] == "draft":
        _finalize(ctx, invoice, None)
        if invoice["status"] == "paid":
            return store.render(invoice)
    if out_of_band or pm is None:
        _mark_paid(ctx, invoice, invoice["amount_due"] if out_of_band else 0)
        return store.render(invoice)
    _charge(ctx, invoice, customer, pm)
    return store.render(invoice)


def _charge(ctx: Ctx, invoice: dict[str, Any], customer: dict[str, Any], pm: dict[str, Any]) -> None:
    """Collect the amount due with a PaymentIntent for the invoice; a decline leaves the invoice open (a 402)."""
    store = ctx.store
    invoice.update(attempted=True, attempt_count=invoice["attempt_count"] + 1)
    intent = payment_intents.build(ctx, amount=invoice["amount_due"], currency=invoice["currency"], customer=customer["id"],
                                   description=f"Payment for Invoice {invoice['number']}", metadata={}, apm=None, types=["card"],
                                   capture="automatic", options=payment_intents.card_options(), receipt_email=None)
    intent.update(payment_method=pm["id"], status="requires_confirmation")
    store.add(intent, ctx.mode)
    events.emit(ctx, "payment_intent.created", intent)
    try:
        payment_intents.execute(ctx, intent, pm)
    except StripeError:
        events.emit(ctx, "invoice.payment_failed", invoice)
        raise
    _mark_paid(ctx, invoice, invoice["amount_due"])
