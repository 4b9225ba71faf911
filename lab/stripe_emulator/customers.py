"""``/v1/customers``: create, retrieve, update, list, delete (a deleted customer is retrieved as a stub, as in Stripe)."""

from __future__ import annotations

from typing import Any

from . import cards, events, forms, listing
from .context import Ctx
from .errors import invalid, unknown_param
from .store import random_token

CREATE_PARAMS = ("email", "name", "description", "phone", "metadata", "payment_method", "invoice_settings", "address",
                 "preferred_locales")
UPDATE_PARAMS = ("email", "name", "description", "phone", "metadata", "invoice_settings", "address", "preferred_locales")
LIST_PARAMS = ("email", "created", "limit", "starting_after", "ending_before")
ADDRESS_FIELDS = ("city", "country", "line1", "line2", "postal_code", "state")


def _address(params: dict[str, Any]) -> dict[str, Any] | None | bool:
    """The address hash, None to unset it, or False when the request does not name it."""
    if "address" not in params:
        return False
    raw = forms.get_dict(params, "address")
    if not raw:
        return None
    for key in raw:
        if key not in ADDRESS_FIELDS:
            raise unknown_param(f"address[{key}]")
    return {f: forms.get_str(raw, f, label=f"address[{f}]") or None for f in ADDRESS_FIELDS}


def _apply(ctx: Ctx, customer: dict[str, Any]) -> None:
    """Set the fields a create or update request names (validated before anything changes)."""
    params = ctx.params
    values = {name: forms.get_str(params, name) for name in ("email", "name", "description", "phone")}
    address = _address(params)
    locales = forms.get_str_list(params, "preferred_locales")
    metadata = forms.apply_metadata(customer["metadata"], params)
    settings = forms.get_dict(params, "invoice_settings")
    default_pm: str | None | bool = False
    if settings is not None:
        for key in settings:
            if key != "default_payment_method":
                raise unknown_param(f"invoice_settings[{key}]")
        if "default_payment_method" in settings:
            default_pm = forms.get_str(settings, "default_payment_method", label="invoice_settings[default_payment_method]") or None
    if isinstance(default_pm, str) and default_pm not in cards.TEST_CARDS:
        pm = cards.resolve(ctx, default_pm, param="invoice_settings[default_payment_method]")
        if pm["customer"] != customer["id"]:
            raise invalid(f"The customer does not have a payment method with the ID {default_pm}. The payment method must be attached "
                          "to the customer.", param="invoice_settings[default_payment_method]")
    pm_param = forms.get_str(params, "payment_method")
    for name, value in values.items():
        if value is not None:
            customer[name] = value or None
    if address is not False:
        customer["address"] = address
    if locales is not None:
        customer["preferred_locales"] = locales
    customer["metadata"] = metadata
    if pm_param:
        cards.resolve(ctx, pm_param, customer=customer["id"])["customer"] = customer["id"]
    if isinstance(default_pm, str) and default_pm in cards.TEST_CARDS:
        default_pm = cards.resolve(ctx, default_pm, customer=customer["id"])["id"]
    if default_pm is not False:
        customer["invoice_settings"]["default_payment_method"] = default_pm


def create(ctx: Ctx) -> dict[str, Any]:
    store = ctx.store
    pm_param = forms.get_str(ctx.params, "payment_method")
    if pm_param and pm_param not in cards.TEST_CARDS:
        cards.resolve(ctx, pm_param)  # an unknown id fails before the customer exists
    customer = {
        "id": store.new_id("cus", 14), "object": "customer", "address": None, "balance": 0, "created": ctx.now, "currency": None,
        "default_source": None, "delinquent": False, "description": None, "discount": None, "email": None,
        "invoice_prefix": random_token(8).upper(), "livemode": ctx.livemode, "metadata": {}, "name": None,
        "invoice_settings": {"custom_fields": None, "default_payment_method": None, "footer": None, "rendering_options": None},
        "next_invoice_sequence": 1, "phone": None, "preferred_locales": [], "shipping": None, "tax_exempt": "none", "test_clock": None,
    }
    _apply(ctx, customer)
    store.add(customer, ctx.mode)
    events.emit(ctx, "customer.created", customer)
    return store.render(customer)


def retrieve(ctx: Ctx, customer_id: str) -> dict[str, Any]:
    obj = ctx.store.lookup(customer_id)
    if obj is not None and obj.get("object") == "customer" and obj.get("_deleted") and obj["_mode"] == ctx.mode:
        return {"id": customer_id, "object": "customer", "deleted": True}
    return ctx.store.render(ctx.store.get("customer", customer_id, ctx.mode))


def update(ctx: Ctx, customer_id: str) -> dict[str, Any]:
    customer = ctx.store.get("customer", customer_id, ctx.mode)
    before = ctx.store.render(customer)
    _apply(ctx, customer)
    previous = events.changes(before, customer)
    if previous:
        events.emit(ctx, "customer.updated", customer, previous)
    return ctx.store.render(customer)


def delete(ctx: Ctx, customer_id: str) -> dict[str, Any]:
    customer = ctx.store.get("customer", customer_id, ctx.mode)
    customer["_deleted"] = True
    events.emit(ctx, "customer.deleted", customer)
    return {"id": customer_id, "object": "customer", "deleted": True}


def list_customers(ctx: Ctx) -> dict[str, Any]:
    email = forms.get_str(ctx.params, "email")
    created = forms.get_created_filter(ctx.params)
    return listing.page(ctx, "customer", "/v1/customers",
                        lambda c: (email is None or c["email"] == email) and forms.created_matches(c["created"], created))
