"""Stripe events received by webhook (table `stripe_events`) and what they mean for a payment's status."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import payment_records
from .database import Database

# The event types that change a payment; every other type is stored and marked processed.
PAYMENT_EVENT_TYPES = ("payment_intent.succeeded", "payment_intent.payment_failed", "charge.refunded")

INSERT_EVENT = ("INSERT INTO stripe_events (id, type, livemode, created, payload) "
                "VALUES (%s, %s, %s, to_timestamp(%s), %s::jsonb) ON CONFLICT (id) DO NOTHING RETURNING id")
PROCESSED = "SELECT processed_at IS NOT NULL FROM stripe_events WHERE id = %s"
MARK_PROCESSED = "UPDATE stripe_events SET processed_at = now() WHERE id = %s AND processed_at IS NULL"
# payment_intent.* events carry the PaymentIntent itself, charge.* events the charge that names it.
EVENTS_OF_INTENT = ("SELECT id, type, extract(epoch FROM created)::bigint, payload->'data'->'object' "
                    "FROM stripe_events WHERE type = ANY(%s) AND (payload->'data'->'object'->>'id' = %s "
                    "OR payload->'data'->'object'->>'payment_intent' = %s) ORDER BY created, received_at")

# Every event about a PaymentIntent, whatever its type, in the order the service received them.
EVENT_TYPES_OF_INTENT = ("SELECT type FROM stripe_events WHERE payload->'data'->'object'->>'id' = %s "
                         "OR payload->'data'->'object'->>'payment_intent' = %s ORDER BY created, received_at, id")


@dataclass(frozen=True)
class PaymentUpdate:
    """The status an event gives the payment of a PaymentIntent."""

    intent_id: str
    status: str


def payment_update(event_type: str, obj: Any) -> PaymentUpdate | None:
    """What a payment_intent.succeeded, payment_intent.payment_failed or charge.refunded event says, else None."""
    if not isinstance(obj, dict):
        return None
    if event_type in ("payment_intent.succeeded", "payment_intent.payment_failed"):
        intent_id, status = obj.get("id"), "succeeded" if event_type.endswith("succeeded") else "failed"
    elif event_type == "charge.refunded":
        intent_id, status = obj.get("payment_intent"), "refunded" if obj.get("refunded") else "partially_refunded"
    else:
        return None
    return PaymentUpdate(intent_id, status) if isinstance(intent_id, str) and intent_id else None


def store(database: Database, event_id: str, event_type: str, livemode: bool, created: int, payload: str) -> bool:
    """Insert the event once; False when an event with this id is already stored."""
    return bool(database.fetch(INSERT_EVENT, (event_id, event_type, livemode, created, payload)))


def processed(database: Database, event_id: str) -> bool:
    """True once the event's effects were applied."""
    rows = database.fetch(PROCESSED, (event_id,))
    return bool(rows and rows[0][0])


def mark_processed(database: Database, event_id: str) -> None:
    """Record that the event's effects were applied (the first time only)."""
    database.fetch(MARK_PROCESSED, (event_id,))


def apply(database: Database, update: PaymentUpdate | None) -> bool:
    """Move the matching payment's status forward; False when no stored payment changed."""
    if update is None:
        return False
    return payment_records.advance_status(database, update.intent_id, update.status)


def intent_summary(database: Database, intent_id: str) -> dict[str, Any] | None:
    """What the received events tell about a PaymentIntent the service has no payment row for."""
    rows = database.fetch(EVENTS_OF_INTENT, (list(PAYMENT_EVENT_TYPES), intent_id, intent_id))
    if not rows:
        return None
    best: tuple[int, str] = (-1, "")
    amount = currency = None
    for _event_id, event_type, _created, obj in rows:
        update = payment_update(event_type, obj)
        if update:
            best = max(best, (payment_records.STATUS_RANK.get(update.status, 0), update.status))
        if event_type.startswith("payment_intent."):
            amount, currency = obj.get("amount"), obj.get("currency")
    last_id, last_type, last_created, _obj = rows[-1]
    return {"source": "webhook", "stripe_payment_intent_id": intent_id, "status": best[1], "amount": amount,
            "currency": currency, "last_event": {"id": last_id, "type": last_type, "created": last_created},
            "events": len(rows)}


def event_types_of_intent(database: Database, intent_id: str) -> list[str]:
    """The types of the received events about a PaymentIntent (its own events, its charges' and refunds'), oldest
    first: what a smoke test reads to prove that webhooks reach the service."""
    return [str(row[0]) for row in database.fetch(EVENT_TYPES_OF_INTENT, (intent_id, intent_id))]
