"""Payments and refunds as stored in PostgreSQL (tables `payments` and `refunds`).

Only the columns of the first payments schema are read or written, so the code runs against it and against
later expand-only schemas (release 1.1.0 adds a nullable `payments.description`, which stays unused here).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .database import Database

# A status only moves forward: a late, replayed or out-of-order update never undoes a newer one. Statuses not
# listed (Stripe's in-between states such as processing or requires_action) rank lowest.
STATUS_RANK = {"failed": 1, "succeeded": 2, "partially_refunded": 3, "refunded": 4}
REFUNDABLE = ("succeeded", "partially_refunded")

_PAYMENT = ("id, stripe_payment_intent_id, customer_id, amount, currency, status, "
            "extract(epoch FROM created_at)::bigint, extract(epoch FROM updated_at)::bigint")
# created_at is now() unless given (a row recreated from Stripe keeps the PaymentIntent's creation time).
_CREATED = "coalesce(to_timestamp(%s::double precision), now())"
INSERT_PAYMENT = ("INSERT INTO payments (id, stripe_payment_intent_id, customer_id, amount, currency, status, "
                  f"idempotency_key, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, {_CREATED}) "
                  "ON CONFLICT DO NOTHING RETURNING " + _PAYMENT)
PAYMENT_BY = {column: f"SELECT {_PAYMENT} FROM payments WHERE {column} = %s"
              for column in ("id", "idempotency_key", "stripe_payment_intent_id")}
ADVANCE_STATUS = ("UPDATE payments SET status = %s, updated_at = now() "
                  "WHERE stripe_payment_intent_id = %s AND status <> %s AND NOT (status = ANY(%s)) RETURNING id")
CUSTOMER = "SELECT email, name FROM customers WHERE id = %s"

_REFUND = "id, payment_id, stripe_refund_id, amount, status, extract(epoch FROM created_at)::bigint"
INSERT_REFUND = ("INSERT INTO refunds (id, payment_id, stripe_refund_id, amount, status, created_at) "
                 f"VALUES (%s, %s, %s, %s, %s, {_CREATED}) ON CONFLICT DO NOTHING RETURNING " + _REFUND)
REFUND_BY_ID = f"SELECT {_REFUND} FROM refunds WHERE id = %s"
REFUNDED = "SELECT coalesce(sum(amount), 0) FROM refunds WHERE payment_id = %s AND status = ANY(%s)"


@dataclass(frozen=True)
class Payment:
    """One row of `payments`; created and updated are epoch seconds."""

    id: str
    stripe_payment_intent_id: str
    customer_id: str | None
    amount: int
    currency: str
    status: str
    created: int
    updated: int

    def to_json(self) -> dict[str, Any]:
        """The API representation."""
        return asdict(self)


@dataclass(frozen=True)
class Refund:
    """One row of `refunds`; created is epoch seconds."""

    id: str
    payment_id: str
    stripe_refund_id: str
    amount: int
    status: str
    created: int

    def to_json(self) -> dict[str, Any]:
        """The API representation."""
        return asdict(self)


def _payment(rows: list[tuple[Any, ...]]) -> Payment | None:
    return Payment(*rows[0]) if rows else None


def insert_payment(database: Database, payment_id: str, intent_id: str, customer_id: str | None, amount: int,
                   currency: str, status: str, idempotency_key: str, created: int | None = None) -> Payment | None:
    """The new row, or None when the id, the PaymentIntent or the idempotency key is already stored."""
    rows = database.fetch(INSERT_PAYMENT, (payment_id, intent_id, customer_id, amount, currency, status,
                                           idempotency_key, created))
    return _payment(rows)


def payment_by(database: Database, column: str, value: str) -> Payment | None:
    """The payment whose id, idempotency_key or stripe_payment_intent_id is value."""
    return _payment(database.fetch(PAYMENT_BY[column], (value,)))


def advance_status(database: Database, intent_id: str, status: str) -> bool:
    """Set the status of the payment of a PaymentIntent unless its current status ranks higher."""
    rank = STATUS_RANK.get(status, 0)
    higher = [name for name, other in STATUS_RANK.items() if other > rank]
    return bool(database.fetch(ADVANCE_STATUS, (status, intent_id, status, higher)))


def customer(database: Database, customer_id: str) -> tuple[str, str] | None:
    """Email and name of a stored customer."""
    rows = database.fetch(CUSTOMER, (customer_id,))
    return (rows[0][0], rows[0][1]) if rows else None


def insert_refund(database: Database, refund_id: str, payment_id: str, stripe_refund_id: str, amount: int,
                  status: str, created: int | None = None) -> Refund | None:
    """The new row, or None when this refund is already stored."""
    rows = database.fetch(INSERT_REFUND, (refund_id, payment_id, stripe_refund_id, amount, status, created))
    return Refund(*rows[0]) if rows else None


def refund_by_id(database: Database, refund_id: str) -> Refund | None:
    """A stored refund."""
    rows = database.fetch(REFUND_BY_ID, (refund_id,))
    return Refund(*rows[0]) if rows else None


def refunded_amount(database: Database, payment_id: str, statuses: tuple[str, ...]) -> int:
    """The sum of the payment's refunds in the given statuses."""
    return int(database.fetch(REFUNDED, (payment_id, list(statuses)))[0][0])
