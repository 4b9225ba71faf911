"""POST /webhooks/stripe: verified Stripe events, stored once by event id, applied to the payments they name.

No bearer token: Stripe authenticates with the Stripe-Signature header (HMAC-SHA256 of the timestamp and
the raw body, keyed with STRIPE_WEBHOOK_SECRET). A delivery older than the tolerance is refused, so a captured
request cannot be replayed later. Stripe delivers at least once and retries until it gets a 2xx: duplicates
are answered 200 at once, and a failure to store (503) makes Stripe deliver again.
"""

from __future__ import annotations

import json
from typing import Any

import stripe

from . import stripe_events
from .service import Service
from .web import HTTPError, Request, Response, json_response

MAX_WEBHOOK_BYTES = 1024 * 1024
TOLERANCE_S = 300  # Stripe's default: five minutes between signing and verification


def receive(service: Service, request: Request, params: dict[str, str]) -> Response:
    """Verify, store idempotently, apply, mark processed; 400 for a bad signature, 503 when not configured."""
    secret = service.settings.stripe_webhook_secret
    if not secret:
        raise HTTPError(503, "not_configured", "STRIPE_WEBHOOK_SECRET is not set: events cannot be verified",
                        [("Retry-After", "60")])
    payload = _verified(service, request.body(MAX_WEBHOOK_BYTES), request.header("Stripe-Signature"), secret)
    event = json.loads(payload)
    try:
        event_id, event_type, livemode, created = _envelope(event)
    except HTTPError:
        service.metrics.count_webhook("rejected")
        raise
    try:
        return _process(service, event, event_id, event_type, livemode, created, payload)
    except Exception:  # answered 503 or 500 by app.py: Stripe delivers the event again
        service.metrics.count_webhook("error")
        raise


def _process(service: Service, event: dict[str, Any], event_id: str, event_type: str, livemode: bool, created: int,
             payload: str) -> Response:
    """Store the event once, apply it to its payment and mark it processed; a duplicate is answered at once."""
    database = service.database
    if not stripe_events.store(database, event_id, event_type, livemode, created, payload) \
            and stripe_events.processed(database, event_id):
        service.metrics.count_webhook("duplicate")
        return json_response(200, {"received": True, "id": event_id, "duplicate": True})
    data = event.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    applied = stripe_events.apply(database, stripe_events.payment_update(event_type, obj))
    stripe_events.mark_processed(database, event_id)
    service.metrics.count_webhook("stored")
    return json_response(200, {"received": True, "id": event_id, "duplicate": False, "payment_updated": applied})


def _verified(service: Service, raw: bytes, signature: str, secret: str) -> str:
    """The body as text once its signature and timestamp check out, else 400."""
    try:
        payload = raw.decode("utf-8")
        stripe.Webhook.construct_event(payload, signature, secret, tolerance=TOLERANCE_S)
    except stripe.SignatureVerificationError as exc:
        service.metrics.count_webhook("rejected")
        service.logger.warning("webhook refused: %s", exc.user_message)
        raise HTTPError(400, "invalid_signature", _reason(signature, str(exc.user_message))) from None
    except (ValueError, TypeError, AttributeError):
        # Not UTF-8, not JSON, or signed JSON that is no object (the SDK's parser then fails with AttributeError).
        service.metrics.count_webhook("rejected")
        raise HTTPError(400, "invalid_payload", "the body is not a JSON Stripe event") from None
    return payload


def _reason(signature: str, message: str) -> str:
    """A short reason for the sender (the SDK's messages carry hints meant for the receiver's developers)."""
    if not signature:
        return "the Stripe-Signature header is missing"
    if "tolerance" in message:
        return f"the signature's timestamp is outside the {TOLERANCE_S} s tolerance"
    return "the Stripe-Signature header does not match the body"


def _envelope(event: Any) -> tuple[str, str, bool, int]:
    """Id, type, livemode and created of a Stripe event, or 400."""
    if not isinstance(event, dict):
        raise HTTPError(400, "invalid_payload", "the body is not a Stripe event object")
    event_id, event_type, livemode, created = (event.get(name) for name in ("id", "type", "livemode", "created"))
    if not (isinstance(event_id, str) and event_id.startswith("evt_") and isinstance(event_type, str)
            and isinstance(livemode, bool) and isinstance(created, int) and not isinstance(created, bool)):
        raise HTTPError(400, "invalid_payload", "the event lacks id, type, livemode or created")
    return event_id, event_type, livemode, created
