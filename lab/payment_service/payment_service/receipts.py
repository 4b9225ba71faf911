"""Receipts: an email to the customer of a payment that succeeded, sent by the background mailer.

The message names the payment (X-Payment-Id, X-Payment-Intent headers) and its amount; it carries no card data
(the service never sees any) and nothing secret.
"""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import formatdate, make_msgid

from .config import EMAIL_ADDRESS
from .mailer import Email
from .payment_records import Payment
from .service import Service

KIND = "receipt"
# Stripe's currencies without a minor unit, and those with three decimals; every other one has two.
ZERO_DECIMAL = frozenset({"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv",
                          "xaf", "xof", "xpf"})
THREE_DECIMAL = frozenset({"bhd", "jod", "kwd", "omr", "tnd"})


def format_amount(amount: int, currency: str) -> str:
    """An amount in the smallest currency unit as people read it, e.g. 50 usd -> '0.50 USD'."""
    code = currency.lower()
    decimals = 0 if code in ZERO_DECIMAL else 3 if code in THREE_DECIMAL else 2
    if not decimals:
        return f"{amount} {code.upper()}"
    whole, fraction = divmod(amount, 10 ** decimals)
    return f"{whole}.{fraction:0{decimals}d} {code.upper()}"


def message(payment: Payment, recipient: str, sender: str) -> EmailMessage:
    """The receipt of a payment, with a unique Message-ID in the sender's domain."""
    amount = format_amount(payment.amount, payment.currency)
    email = EmailMessage()
    email["From"] = sender
    email["To"] = recipient
    email["Subject"] = f"Receipt for your payment of {amount}"
    email["Date"] = formatdate(usegmt=True)
    email["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2])
    email["X-Payment-Id"] = payment.id
    email["X-Payment-Intent"] = payment.stripe_payment_intent_id
    email.set_content(f"Thank you for your payment.\n\nAmount: {amount}\nPayment: {payment.id}\n"
                      f"Date: {formatdate(payment.created, usegmt=True)}\n")
    return email


def send(service: Service, payment: Payment, recipient: str) -> None:
    """Queue the receipt of a succeeded payment when SMTP is configured; never blocks, never raises."""
    if service.mailer is None:
        return
    if not EMAIL_ADDRESS.fullmatch(recipient):
        service.metrics.count_email(KIND, "failed")
        service.logger.warning("receipt for %s not sent: the customer's address cannot be used in SMTP", payment.id)
        return
    sender = service.settings.receipt_from
    service.mailer.submit(Email(KIND, message(payment, recipient, sender), sender, recipient, payment.id))
