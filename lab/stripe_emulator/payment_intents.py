"""``/v1/payment_intents``: create, confirm, retrieve, update, list, cancel, with Stripe's test cards deciding the outcome."""

from __future__ import annotations

import hashlib
from typing import Any
from urllib.parse import urlsplit

from . import cards, charges, events, forms, listing, money
from .context import Ctx
from .errors import StripeError, invalid, missing_param, unimplemented_param, unknown_param
from .store import random_token

RETURN_URL_REQUIRED = (
    "This PaymentIntent is configured to accept payment methods enabled in your Dashboard, because some of these payment "
    "methods might redirect your customer off of your page, you must provide a `return_url`. If you don't want to accept "
    "redirect-based payment methods, set `automatic_payment_methods[enabled]` to `true` and "
    "`automatic_payment_methods[allow_redirects]` to `never` when creating Setup Intents and Payment Intents."
)
ACTIVATED_TYPES = ("card",)  # the payment method types the lab account has turned on
CONFIRMABLE = ("requires_payment_method", "requires_confirmation", "requires_action")
CANCELABLE = ("requires_payment_method", "requires_capture", "requires_confirmation", "requires_action", "processing")
UPDATABLE_AMOUNTS = ("requires_payment_method", "requires_confirmation", "requires_action")
CANCELLATION_REASONS = ("duplicate", "fraudulent", "requested_by_customer", "abandoned")

CREATE_PARAMS = ("amount", "currency", "customer", "description", "metadata", "payment_method", "confirm", "automatic_payment_methods",
                 "payment_method_types", "allowed_payment_method_types", "return_url", "capture_method", "confirmation_method",
                 "receipt_email", "off_session", "error_on_requires_action", "payment_method_options")
CONFIRM_PARAMS = ("payment_method", "return_url", "receipt_email", "off_session", "error_on_requires_action", "payment_method_options")
UPDATE_PARAMS = ("amount", "currency", "customer", "description", "metadata", "payment_method", "receipt_email")
LIST_PARAMS = ("customer", "created", "limit", "starting_after", "ending_before")
CANCEL_PARAMS = ("cancellation_reason",)


# parameters -------------------------------------------------------------------------------------------------------
def _apm(params: dict[str, Any]) -> dict[str, Any] | None:
    raw = forms.get_dict(params, "automatic_payment_methods")
    if raw is None:
        return None
    for key in raw:
        if key not in ("enabled", "allow_redirects"):
            raise unknown_param(f"automatic_payment_methods[{key}]")
    enabled = forms.get_bool(raw, "enabled", label="automatic_payment_methods[enabled]")
    if enabled is None:
        raise missing_param("automatic_payment_methods[enabled]")
    redirects = forms.get_enum(raw, "allow_redirects", ("always", "never"), label="automatic_payment_methods[allow_redirects]")
    return {"allow_redirects": redirects or "always", "enabled": True} if enabled else {"enabled": False}


def _types(params: dict[str, Any]) -> list[str] | None:
    name = "allowed_payment_method_types" if "allowed_payment_method_types" in params else "payment_method_types"
    types = forms.get_str_list(params, name)
    if types is None:
        return None
    if not types:
        raise missing_param(name)
    for kind in types:
        if kind not in ACTIVATED_TYPES:
            raise invalid(f'The payment method type "{kind}" is invalid. Please ensure the provided type is activated in your '
                          "dashboard (https://dashboard.stripe.com/account/payments/settings) and your account is enabled for "
                          "any preview features that you are trying to use. (The emulator activates: card.)", param=name)
    return list(dict.fromkeys(types))


def _card_options(params: dict[str, Any], current: dict[str, Any]) -> dict[str, Any]:
    raw = forms.get_dict(params, "payment_method_options")
    if raw is None:
        return current
    options = {k: dict(v) for k, v in current.items()}
    for kind in raw:
        if kind != "card":
            raise unimplemented_param(f"payment_method_options[{kind}]", "/v1/payment_intents")
        card = forms.get_dict(raw, "card", label="payment_method_options[card]") or {}
        for key in card:
            if key != "request_three_d_secure":
                raise unimplemented_param(f"payment_method_options[card][{key}]", "/v1/payment_intents")
        secure = forms.get_enum(card, "request_three_d_secure", ("any", "automatic", "challenge"),
                                label="payment_method_options[card][request_three_d_secure]")
        if secure:
            options["card"]["request_three_d_secure"] = secure
    return options


def _return_url(params: dict[str, Any]) -> str | None:
    url = forms.get_str(params, "return_url", max_len=2048)
    if url is not None and not (urlsplit(url).scheme and (urlsplit(url).netloc or urlsplit(url).path)):
        raise invalid("Not a valid URL", param="return_url")
    return url or None


def _customer(ctx: Ctx, params: dict[str, Any]) -> str | None:
    customer_id = forms.get_str(params, "customer")
    if not customer_id:
        return None
    ctx.store.get("customer", customer_id, ctx.mode, param="customer", status=400)
    return customer_id


def _simple_enum(params: dict[str, Any], name: str, allowed: tuple[str, ...], implemented: tuple[str, ...]) -> str | None:
    value = forms.get_enum(params, name, allowed)
    if value is not None and value not in implemented:
        raise invalid(f"{name}={value} is valid in Stripe but not implemented by this emulator (it implements "
                      f"{forms.one_of(implemented)}); see docs/stripe-emulator.md.", param=name)
    return value


# the object ---------------------------------------------------------------------------------------------------------
def _configuration_id(ctx: Ctx) -> str:
    # One payment method configuration per account and mode, as an account's default one.
    digest = hashlib.sha256(f"{ctx.store.settings.account}/{ctx.mode}".encode()).hexdigest()[:24]
    return f"pmc_{digest}"


def build(ctx: Ctx, *, amount: int | None, currency: str, customer: str | None, description: str | None, metadata: dict[str, str],
          apm: dict[str, Any] | None, types: list[str], capture: str, options: dict[str, Any], receipt_email: str | None) -> dict[str, Any]:
    """A new PaymentIntent (not stored yet) in ``requires_payment_method``."""
    pi_id = ctx.store.new_id("pi")
    return {
        "id": pi_id, "object": "payment_intent", "amount": amount, "amount_capturable": 0, "amount_details": {"tip": {}},
        "amount_received": 0, "application": None, "application_fee_amount": None, "automatic_payment_methods": apm,
        "canceled_at": None, "cancellation_reason": None, "capture_method": capture,
        "client_secret": f"{pi_id}_secret_{random_token(25)}", "confirmation_method": "automatic", "created": ctx.now,
        "currency": currency, "customer": customer, "customer_account": None, "description": description,
        "excluded_payment_method_types": None, "last_payment_error": None, "latest_charge": None, "livemode": ctx.livemode,
        "managed_payments": None, "metadata": metadata, "next_action": None, "on_behalf_of": None, "payment_method": None,
        "payment_method_configuration_details": {"id": _configuration_id(ctx), "parent": None} if apm else None,
        "payment_method_options": options, "payment_method_types": types, "processing": None, "receipt_email": receipt_email,
        "review": None, "setup_future_usage": None, "shipping": None, "source": None, "statement_descriptor": None,
        "statement_descriptor_suffix": None, "status": "requires_payment_method", "transfer_data": None, "transfer_group": None,
        "_return_url": None,
    }


def card_options() -> dict[str, Any]:
    return {"card": {"installments": None, "mandate_options": None, "network": None, "request_three_d_secure": "automatic"}}


def _confirmable_check(pi: dict[str, Any], return_url: str | None) -> None:
    """Stripe's rule: dashboard payment methods may redirect, so confirming them needs a return_url."""
    apm = pi["automatic_payment_methods"]
    if apm and apm.get("enabled") and apm.get("allow_redirects") != "never" and not (return_url or pi["_return_url"]):
        raise invalid(RETURN_URL_REQUIRED)


def create(ctx: Ctx) -> dict[str, Any]:
    params = ctx.params
    currency = money.currency(params)
    assert currency is not None
    amount = money.charge_amount(params, currency)
    apm = _apm(params)
    types = _types(params)
    if apm is not None and types is not None:
        raise invalid("You may only specify one of these parameters: automatic_payment_methods, payment_method_types.",
                      param="automatic_payment_methods")
    if apm is None and types is None:
        apm = {"allow_redirects": "always", "enabled": True}  # the default since API version 2023-08-16
    capture = _simple_enum(params, "capture_method", ("automatic", "automatic_async", "manual"), ("automatic", "automatic_async"))
    _simple_enum(params, "confirmation_method", ("automatic", "manual"), ("automatic",))
    customer = _customer(ctx, params)
    confirm = forms.get_bool(params, "confirm") or False
    forms.get_bool(params, "error_on_requires_action")
    if "off_session" in params and not confirm:
        raise invalid("off_session can only be used when confirm=true.", param="off_session")
    return_url = _return_url(params)
    if return_url and not confirm:
        raise invalid("You may only specify return_url when confirm=true.", param="return_url")
    options = _card_options(params, card_options())
    pm_param = forms.get_str(params, "payment_method")
    store = ctx.store
    pi = build(ctx, amount=amount, currency=currency, customer=customer, description=forms.get_str(params, "description") or None,
               metadata=forms.apply_metadata({}, params), apm=apm if apm and apm["enabled"] else None,
               types=types or list(ACTIVATED_TYPES), capture=capture or "automatic_async", options=options,
               receipt_email=forms.get_str(params, "receipt_email") or None)
    if confirm:
        _confirmable_check(pi, return_url)
        if not pm_param:
            raise _missing_payment_method()
    pm = cards.resolve(ctx, pm_param, customer=None) if pm_param else None
    if pm is not None:
        pi["payment_method"] = pm["id"]
        pi["status"] = "requires_confirmation"
    pi["_return_url"] = return_url
    store.add(pi, ctx.mode)
    events.emit(ctx, "payment_intent.created", pi)
    if confirm and pm is not None:
        execute(ctx, pi, pm)
    return store.render(pi)


def _missing_payment_method() -> StripeError:
    return StripeError(400, "You cannot confirm this PaymentIntent because it's missing a payment method. You can either update the "
                       "PaymentIntent with a payment method and then confirm it again, or confirm it again directly with a payment "
                       "method or ConfirmationToken.", code="payment_intent_unexpected_state")


def confirm(ctx: Ctx, pi_id: str) -> dict[str, Any]:
    params = ctx.params
    store = ctx.store
    pi = store.get("payment_intent", pi_id, ctx.mode, label="payment_intent")
    if pi["status"] not in CONFIRMABLE:
        detail = ("it has already succeeded after being previously confirmed" if pi["status"] == "succeeded"
                  else f"it has a status of {pi['status']}")
        raise StripeError(400, f"You cannot confirm this PaymentIntent because {detail}. Only a PaymentIntent with one of the "
                          f"following statuses may be confirmed: requires_confirmation, requires_payment_method.",
                          code="payment_intent_unexpected_state", extra={"payment_intent": store.render(pi)})
    return_url = _return_url(params)
    forms.get_bool(params, "error_on_requires_action")
    options = _card_options(params, pi["payment_method_options"])
    pm_param = forms.get_str(params, "payment_method")
    if not pm_param and not pi["payment_method"]:
        raise _missing_payment_method()
    _confirmable_check(pi, return_url)
    pm = cards.resolve(ctx, pm_param) if pm_param else store.lookup(pi["payment_method"])
    assert pm is not None
    receipt = forms.get_str(params, "receipt_email")
    if receipt is not None:
        pi["receipt_email"] = receipt or None
    if return_url:
        pi["_return_url"] = return_url
    pi["payment_method_options"] = options
    pi["payment_method"] = pm["id"]
    execute(ctx, pi, pm)
    return store.render(pi)


def execute(ctx: Ctx, pi: dict[str, Any], pm: dict[str, Any]) -> None:
    """Charge the card: the intent succeeds, or fails with the card's decline (a 402 that is kept for idempotent replay)."""
    charge = charges.create_for(ctx, pi, pm)
    pi["latest_charge"] = charge["id"]
    decline = cards.decline_of(pm)
    if decline is None:
        pi.update(status="succeeded", amount_received=pi["amount"], last_payment_error=None)
        events.emit(ctx, "charge.succeeded", charge)
        events.emit(ctx, "payment_intent.succeeded", pi)
        return
    error = {"charge": charge["id"], "code": decline.code, "decline_code": decline.decline_code,
             "doc_url": "https://stripe.com/docs/error-codes/" + decline.code.replace("_", "-"), "message": decline.message,
             "payment_method": ctx.store.render(pm), "type": "card_error"}
    if decline.param:
        error["param"] = decline.param
    pi.update(status="requires_payment_method", payment_method=None, last_payment_error=error)
    events.emit(ctx, "charge.failed", charge)
    events.emit(ctx, "payment_intent.payment_failed", pi)
    raise StripeError(402, decline.message, type_="card_error", code=decline.code, param=decline.param, saved=True,
                      extra={"charge": charge["id"], "decline_code": decline.decline_code,
                             "payment_intent": ctx.store.render(pi), "payment_method": ctx.store.render(pm)})


def retrieve(ctx: Ctx, pi_id: str) -> dict[str, Any]:
    return ctx.store.render(ctx.store.get("payment_intent", pi_id, ctx.mode, label="payment_intent"))


def update(ctx: Ctx, pi_id: str) -> dict[str, Any]:
    params = ctx.params
    store = ctx.store
    pi = store.get("payment_intent", pi_id, ctx.mode, label="payment_intent")
    money_fields = [name for name in ("amount", "currency", "customer", "payment_method") if name in params]
    if money_fields and pi["status"] not in UPDATABLE_AMOUNTS:
        raise StripeError(400, f"You cannot update {money_fields[0]} on this PaymentIntent because it has a status of {pi['status']}.",
                          param=money_fields[0], code="payment_intent_unexpected_state")
    currency = money.currency(params, required=False) or pi["currency"]
    amount = money.charge_amount(params, currency, required=False)
    if "amount" not in params and currency != pi["currency"]:
        money.charge_amount({"amount": str(pi["amount"])}, currency)
    customer = _customer(ctx, params) if "customer" in params else pi["customer"]
    description = forms.get_str(params, "description")
    receipt = forms.get_str(params, "receipt_email")
    metadata = forms.apply_metadata(pi["metadata"], params)
    pm_param = forms.get_str(params, "payment_method")
    pm = cards.resolve(ctx, pm_param) if pm_param else None
    pi.update(currency=currency, customer=customer, metadata=metadata)
    if amount is not None:
        pi["amount"] = amount
    if description is not None:
        pi["description"] = description or None
    if receipt is not None:
        pi["receipt_email"] = receipt or None
    if pm is not None:
        pi.update(payment_method=pm["id"], status="requires_confirmation")
    return store.render(pi)


def cancel(ctx: Ctx, pi_id: str) -> dict[str, Any]:
    store = ctx.store
    pi = store.get("payment_intent", pi_id, ctx.mode, label="payment_intent")
    reason = forms.get_enum(ctx.params, "cancellation_reason", CANCELLATION_REASONS)
    if pi["status"] not in CANCELABLE:
        raise StripeError(400, f"You cannot cancel this PaymentIntent because it has a status of {pi['status']}. Only a PaymentIntent "
                          f"with one of the following statuses may be canceled: {', '.join(CANCELABLE)}.",
                          code="payment_intent_unexpected_state", extra={"payment_intent": store.render(pi)})
    pi.update(status="canceled", canceled_at=ctx.now, cancellation_reason=reason)
    events.emit(ctx, "payment_intent.canceled", pi)
    return store.render(pi)


def list_intents(ctx: Ctx) -> dict[str, Any]:
    customer = forms.get_str(ctx.params, "customer")
    created = forms.get_created_filter(ctx.params)
    return listing.page(ctx, "payment_intent", "/v1/payment_intents",
                        lambda pi: (not customer or pi["customer"] == customer) and forms.created_matches(pi["created"], created))
