"""Stripe's test payment methods (``pm_card_visa``, ``pm_card_chargeDeclined`` ...) and the payment methods made from them.

As in Stripe, a test token is not itself a payment method: each use creates a new ``pm_...`` object
with the card's details, and that object can be used again by its id.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

from .context import Ctx
from .errors import no_such


@dataclass(frozen=True)
class Decline:
    code: str
    decline_code: str
    message: str
    param: str | None = None


@dataclass(frozen=True)
class TestCard:
    brand: str
    last4: str
    decline: Decline | None = None


_DECLINED = "Your card was declined."
TEST_CARDS: dict[str, TestCard] = {
    "pm_card_visa": TestCard("visa", "4242"),
    "pm_card_mastercard": TestCard("mastercard", "4444"),
    "pm_card_amex": TestCard("amex", "0005"),
    "pm_card_chargeDeclined": TestCard("visa", "0002", Decline("card_declined", "generic_decline", _DECLINED)),
    "pm_card_chargeDeclinedInsufficientFunds": TestCard(
        "visa", "9995", Decline("card_declined", "insufficient_funds", "Your card has insufficient funds.")),
    "pm_card_chargeDeclinedLostCard": TestCard("visa", "9987", Decline("card_declined", "lost_card", _DECLINED)),
    "pm_card_chargeDeclinedStolenCard": TestCard("visa", "9979", Decline("card_declined", "stolen_card", _DECLINED)),
    "pm_card_chargeDeclinedExpiredCard": TestCard(
        "visa", "0069", Decline("expired_card", "expired_card", "Your card has expired.", "exp_month")),
    "pm_card_chargeDeclinedIncorrectCvc": TestCard(
        "visa", "0127", Decline("incorrect_cvc", "incorrect_cvc", "Your card's security code is incorrect.", "cvc")),
    "pm_card_chargeDeclinedProcessingError": TestCard(
        "visa", "0119", Decline("processing_error", "processing_error",
                                "An error occurred while processing your card. Try again in a little bit.")),
    "pm_card_chargeDeclinedFraudulent": TestCard("visa", "0019", Decline("card_declined", "fraudulent", _DECLINED)),
}
# What Stripe answers when a live-mode request uses a test card.
LIVE_MODE_TEST_CARD = "_live_mode_test_card"
_LIVE_DECLINE = Decline("card_declined", "test_mode_live_card",
                        "Your card was declined. Your request was in live mode, but used a known test card.")


def _fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def _card(token: str) -> dict[str, Any]:
    card = TEST_CARDS.get(token, TEST_CARDS["pm_card_visa"])
    return {
        "brand": card.brand,
        "checks": {"address_line1_check": None, "address_postal_code_check": None, "cvc_check": "unchecked"},
        "country": "US",
        "display_brand": card.brand,
        "exp_month": 12,
        "exp_year": time.gmtime().tm_year + 3,
        "fingerprint": _fingerprint(token),
        "funding": "credit",
        "generated_from": None,
        "last4": card.last4,
        "networks": {"available": [card.brand], "preferred": None},
        "regulated_status": "unregulated",
        "three_d_secure_usage": {"supported": True},
        "wallet": None,
    }


def billing_details() -> dict[str, Any]:
    return {"address": {"city": None, "country": None, "line1": None, "line2": None, "postal_code": None, "state": None},
            "email": None, "name": None, "phone": None, "tax_id": None}


def resolve(ctx: Ctx, value: str, param: str = "payment_method", customer: str | None = None) -> dict[str, Any]:
    """The payment method a request names: a test token makes a new one, a ``pm_`` id must exist in this mode."""
    store = ctx.store
    if ctx.livemode and value in store.settings.live_cards:
        value = store.settings.live_cards[value]
    elif ctx.livemode and value in TEST_CARDS:
        value = LIVE_MODE_TEST_CARD
    if value in TEST_CARDS or value == LIVE_MODE_TEST_CARD:
        pm = {
            "id": store.new_id("pm"),
            "object": "payment_method",
            "allow_redisplay": "unspecified",
            "billing_details": billing_details(),
            "card": _card(value),
            "created": ctx.now,
            "customer": customer,
            "customer_account": None,
            "livemode": ctx.livemode,
            "metadata": {},
            "type": "card",
            "_token": value,
        }
        return store.add(pm, ctx.mode)
    obj = store.lookup(value) if isinstance(value, str) else None
    if obj is None or obj.get("object") != "payment_method" or obj["_mode"] != ctx.mode:
        raise no_such("PaymentMethod", str(value), param=param, status=400,
                      other_mode=obj["_mode"] if obj and obj.get("object") == "payment_method" else None)
    return obj


def decline_of(pm: dict[str, Any]) -> Decline | None:
    if pm["_token"] == LIVE_MODE_TEST_CARD:
        return _LIVE_DECLINE
    return TEST_CARDS[pm["_token"]].decline


def charge_details(pm: dict[str, Any], amount: int) -> dict[str, Any]:
    """``payment_method_details`` of a charge made with this payment method."""
    card = pm["card"]
    return {
        "card": {
            "amount_authorized": amount if decline_of(pm) is None else None,
            "authorization_code": None,
            "brand": card["brand"],
            "checks": {"address_line1_check": None, "address_postal_code_check": None, "cvc_check": "pass"},
            "country": card["country"],
            "exp_month": card["exp_month"],
            "exp_year": card["exp_year"],
            "extended_authorization": {"status": "disabled"},
            "fingerprint": card["fingerprint"],
            "funding": card["funding"],
            "incremental_authorization": {"status": "unavailable"},
            "installments": None,
            "last4": card["last4"],
            "mandate": None,
            "multicapture": {"status": "unavailable"},
            "network": card["brand"],
            "network_token": {"used": False},
            "network_transaction_id": None,
            "overcapture": {"maximum_amount_capturable": amount, "status": "unavailable"},
            "regulated_status": card["regulated_status"],
            "three_d_secure": None,
            "wallet": None,
        },
        "type": "card",
    }


def outcome(decline: Decline | None) -> dict[str, Any]:
    """The charge's ``outcome``: an authorization, or the issuer's decline with its reason."""
    base = {"advice_code": None, "network_advice_code": None, "network_decline_code": None, "risk_level": "normal",
            "risk_score": 20}
    if decline is None:
        return {**base, "network_status": "approved_by_network", "reason": None, "seller_message": "Payment complete.",
                "type": "authorized"}
    seller = ("The bank did not return any further details with this decline." if decline.decline_code == "generic_decline"
              else f"The bank returned the decline code `{decline.decline_code}`.")
    return {**base, "network_status": "declined_by_network", "reason": decline.decline_code, "seller_message": seller,
            "type": "issuer_declined"}
