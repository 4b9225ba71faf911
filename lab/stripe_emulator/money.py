"""Currencies and amounts: Stripe's presentment currencies, minimum charge amounts and how messages print amounts."""

from __future__ import annotations

from typing import Any

from . import forms
from .errors import StripeError, invalid

CURRENCIES = frozenset("""
aed afn all amd ang aoa ars aud awg azn bam bbd bdt bgn bhd bif bmd bnd bob brl bsd bwp byn bzd cad cdf chf clp cny cop crc
cve czk djf dkk dop dzd egp etb eur fjd fkp gbp gel gip gmd gnf gtq gyd hkd hnl htg huf idr ils inr isk jmd jod jpy kes kgs
khr kmf krw kwd kyd kzt lak lbp lkr lrd lsl mad mdl mga mkd mmk mnt mop mur mvr mwk mxn myr mzn nad ngn nio nok npr nzd omr
pab pen pgk php pkr pln pyg qar ron rsd rub rwf sar sbd scr sek sgd shp sle sos srd std szl thb tjs tnd top try ttd twd tzs
uah ugx usd uyu uzs vnd vuv wst xaf xcd xof xpf yer zar zmw
""".split())
ZERO_DECIMAL = frozenset("bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf".split())
SYMBOLS = {"usd": "$", "eur": "€", "gbp": "£", "jpy": "¥", "cad": "$", "aud": "$"}
# Stripe's minimum charge amounts (in the currency's smallest unit) for the currencies the lab uses; 50 elsewhere.
MINIMUMS = {"usd": 50, "eur": 50, "gbp": 30, "cad": 50, "aud": 50, "chf": 50, "jpy": 50, "dkk": 250, "nok": 300, "sek": 300}
MAX_AMOUNT = 99_999_999


def fmt(amount: int, currency: str) -> str:
    """``$25.00``, ``¥500``, ``12.50 pln``: how Stripe's messages print an amount."""
    value = f"{amount:,}" if currency in ZERO_DECIMAL else f"{amount / 100:,.2f}"
    symbol = SYMBOLS.get(currency)
    return f"{symbol}{value}" if symbol else f"{value} {currency}"


def currency(params: dict[str, Any], *, required: bool = True) -> str | None:
    raw = forms.get_str(params, "currency", required=required)
    if raw is None:
        return None
    code = raw.lower()
    if code not in CURRENCIES:
        raise invalid(f"Invalid currency: {raw}. Stripe currently supports these currencies: {', '.join(sorted(CURRENCIES))}",
                      param="currency")
    return code


def charge_amount(params: dict[str, Any], currency_code: str, *, required: bool = True) -> int | None:
    """A payment amount: a positive integer within Stripe's minimum and maximum for the currency."""
    amount = forms.get_int(params, "amount", required=required)
    if amount is None:
        return None
    minimum = MINIMUMS.get(currency_code, 50)
    if amount < 1:
        raise invalid("This value must be greater than or equal to 1.", param="amount")
    if amount < minimum:
        raise StripeError(400, f"Amount must be at least {fmt(minimum, currency_code)} {currency_code}", param="amount",
                          code="amount_too_small")
    if amount > MAX_AMOUNT:
        raise StripeError(400, f"Amount must be no more than {fmt(MAX_AMOUNT, currency_code)}", param="amount",
                          code="amount_too_large")
    return amount
