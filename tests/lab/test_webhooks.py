"""The Stripe webhook receiver: signed deliveries from the emulator, duplicates, forged and stale signatures."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from typing import TYPE_CHECKING, Any, Callable

import psycopg
import pytest

if TYPE_CHECKING:
    from conftest import Postgres, Reply, RunningService, StripeEmulator, WebhookEndpoint

pytestmark = pytest.mark.timeout(180)

PATH = "/webhooks/stripe"
TOLERANCE_S = 300


def eventually(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    """Poll check until it holds; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)


def sign(payload: str, secret: str, timestamp: int | None = None) -> str:
    """A Stripe-Signature header computed as Stripe does: HMAC-SHA256 of '<t>.<payload>'."""
    stamp = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{stamp}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={stamp},v1={mac}"


def deliver(service: RunningService, payload: str, signature: str | None) -> Reply:
    """POST a payload as Stripe does: raw JSON body, no bearer token."""
    headers = {"Content-Type": "application/json; charset=utf-8"}
    if signature is not None:
        headers["Stripe-Signature"] = signature
    return service.call("POST", PATH, headers=headers, raw=payload.encode())


def synthetic_event(event_type: str = "customer.created", obj: dict[str, Any] | None = None) -> tuple[str, str]:
    """A new event id and its JSON, shaped like Stripe's."""
    event_id = "evt_test_" + secrets.token_hex(8)
    event = {"id": event_id, "object": "event", "api_version": "2026-10-28.endive", "created": int(time.time()),
             "livemode": False, "pending_webhooks": 1, "type": event_type,
             "data": {"object": obj or {"id": "cus_" + secrets.token_hex(6), "object": "customer"}}}
    return event_id, json.dumps(event)


def event_rows(postgres: Postgres, where: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(postgres.admin_dsn()) as conn:
        return conn.execute("SELECT id, type, livemode, extract(epoch FROM created)::bigint, processed_at IS NOT NULL "
                            f"FROM stripe_events WHERE {where}", params).fetchall()


def payment_status(postgres: Postgres, payment_id: str) -> str:
    with psycopg.connect(postgres.admin_dsn()) as conn:
        row = conn.execute("SELECT status FROM payments WHERE id = %s", (payment_id,)).fetchone()
    assert row is not None
    return str(row[0])


def test_emulator_delivery_of_an_outside_payment_is_stored_and_looked_up(
        stripe_service: RunningService, stripe_emulator: StripeEmulator, postgres: Postgres, api_key: str) -> None:
    # A PaymentIntent made at Stripe directly (as a probe or the Dashboard would): the service knows it only by webhook.
    intent = stripe_emulator.client().v1.payment_intents.create(
        {"amount": 1999, "currency": "eur", "payment_method": "pm_card_visa", "confirm": True,
         "payment_method_types": ["card"]})
    event = stripe_emulator.client().v1.events.list({"type": "payment_intent.succeeded", "limit": 1}).data[0]
    assert event.data.object.id == intent.id
    where = "id = %s"
    eventually(lambda: bool(event_rows(postgres, where, event.id)), "the signed delivery to be stored")
    assert event_rows(postgres, where, event.id) == [(event.id, "payment_intent.succeeded", False, event.created, True)]
    with psycopg.connect(postgres.admin_dsn()) as conn:
        stored = conn.execute("SELECT payload FROM stripe_events WHERE id = %s", (event.id,)).fetchone()
    assert stored is not None and stored[0]["data"]["object"]["id"] == intent.id
    deliveries = stripe_emulator.admin("GET", f"/_emulator/deliveries?event={event.id}")["data"]
    assert [(d["status"], d["last_status"]) for d in deliveries] == [("succeeded", 200)]
    found = stripe_service.call("GET", f"/v1/payments/by-intent/{intent.id}", token=api_key)
    assert found.status == 200, found.body
    body = found.json()
    assert (body["source"], body["status"], body["amount"], body["currency"]) == ("webhook", "succeeded", 1999, "eur")
    assert body["last_event"]["type"] == "payment_intent.succeeded"


def test_a_refund_made_at_stripe_reaches_the_stored_payment(stripe_service: RunningService,
                                                            stripe_emulator: StripeEmulator, postgres: Postgres,
                                                            webhook_endpoint: WebhookEndpoint, api_key: str) -> None:
    payment = stripe_service.call("POST", "/v1/payments", token=api_key, headers={"Idempotency-Key": secrets.token_hex(8)},
                                  body={"amount": 5000, "currency": "usd", "payment_method": "pm_card_visa"}).json()
    assert payment["status"] == "succeeded"
    stripe_emulator.client().v1.refunds.create({"payment_intent": payment["stripe_payment_intent_id"]})
    eventually(lambda: payment_status(postgres, payment["id"]) == "refunded", "charge.refunded to update the payment")
    refunded = event_rows(postgres, "type = 'charge.refunded' AND payload->'data'->'object'->>'payment_intent' = %s",
                          payment["stripe_payment_intent_id"])
    assert len(refunded) == 1 and refunded[0][4] is True
    # A late payment_intent.succeeded must not move the payment back.
    late_id, late = synthetic_event("payment_intent.succeeded",
                                    {"id": payment["stripe_payment_intent_id"], "object": "payment_intent",
                                     "status": "succeeded", "amount": 5000, "currency": "usd"})
    reply = deliver(stripe_service, late, sign(late, webhook_endpoint.secret))
    assert (reply.status, reply.json()["id"], reply.json()["payment_updated"]) == (200, late_id, False)
    assert payment_status(postgres, payment["id"]) == "refunded"


def event_types_at_stripe(emulator: StripeEmulator, intent_id: str) -> list[str]:
    """The types of the events Stripe made about a PaymentIntent (its own, its charges' and refunds'), sorted."""
    events = emulator.client().v1.events.list({"limit": 100}).data
    objects = [(event.type, event.data.object.to_dict()) for event in events]
    return sorted(kind for kind, obj in objects if intent_id in (obj.get("id"), obj.get("payment_intent")))


def test_a_payment_lists_the_webhook_events_received_for_it(stripe_service: RunningService,
                                                            stripe_emulator: StripeEmulator, postgres: Postgres,
                                                            api_key: str) -> None:
    payment = stripe_service.call("POST", "/v1/payments", token=api_key, headers={"Idempotency-Key": secrets.token_hex(8)},
                                  body={"amount": 700, "currency": "eur", "payment_method": "pm_card_visa"}).json()
    intent_id = payment["stripe_payment_intent_id"]

    def listed() -> list[str]:
        reply = stripe_service.call("GET", f"/v1/payments/{payment['id']}", token=api_key)
        assert reply.status == 200, reply.body
        return list(reply.json()["webhook_events"])

    def stored_in_order() -> list[str]:
        with psycopg.connect(postgres.admin_dsn()) as conn:
            return [row[0] for row in conn.execute(
                "SELECT type FROM stripe_events WHERE payload->'data'->'object'->>'id' = %s "
                "OR payload->'data'->'object'->>'payment_intent' = %s ORDER BY created, received_at, id",
                (intent_id, intent_id))]

    expected = event_types_at_stripe(stripe_emulator, intent_id)
    assert "payment_intent.succeeded" in expected
    eventually(lambda: sorted(listed()) == expected, "every event of the payment to be received")
    assert listed() == stored_in_order()
    stripe_emulator.client().v1.refunds.create({"payment_intent": intent_id})
    after_refund = event_types_at_stripe(stripe_emulator, intent_id)
    assert "charge.refunded" in after_refund
    eventually(lambda: sorted(listed()) == after_refund, "the refund's events to be listed too")
    assert listed() == stored_in_order()


def test_duplicate_delivery_is_stored_once(stripe_service: RunningService, webhook_endpoint: WebhookEndpoint,
                                           postgres: Postgres) -> None:
    duplicates = stripe_service.metric('stripe_webhook_events_total{outcome="duplicate"}')
    event_id, payload = synthetic_event()
    first = deliver(stripe_service, payload, sign(payload, webhook_endpoint.secret))
    second = deliver(stripe_service, payload, sign(payload, webhook_endpoint.secret))
    assert (first.status, first.json()["duplicate"]) == (200, False)
    assert (second.status, second.json()) == (200, {"received": True, "id": event_id, "duplicate": True})
    assert len(event_rows(postgres, "id = %s", event_id)) == 1
    assert stripe_service.metric('stripe_webhook_events_total{outcome="duplicate"}') == duplicates + 1


def test_an_event_the_emulator_already_delivered_is_a_duplicate(stripe_service: RunningService,
                                                                stripe_emulator: StripeEmulator,
                                                                webhook_endpoint: WebhookEndpoint,
                                                                postgres: Postgres) -> None:
    customer = stripe_emulator.client().v1.customers.create({"email": "dup@example.com"})
    event = stripe_emulator.client().v1.events.list({"type": "customer.created", "limit": 1}).data[0]
    assert event.data.object.id == customer.id
    eventually(lambda: bool(event_rows(postgres, "id = %s", event.id)), "the emulator's delivery to be stored")
    payload = json.dumps(event.to_dict())
    resent = deliver(stripe_service, payload, sign(payload, webhook_endpoint.secret))
    assert (resent.status, resent.json()["duplicate"]) == (200, True)
    assert len(event_rows(postgres, "id = %s", event.id)) == 1


@pytest.mark.parametrize("forgery", ["other_secret", "tampered_body", "no_header", "garbage_header", "no_v1"])
def test_forged_signature_is_400_and_nothing_is_stored(stripe_service: RunningService,
                                                       webhook_endpoint: WebhookEndpoint, postgres: Postgres,
                                                       forgery: str) -> None:
    rejected = stripe_service.metric('stripe_webhook_events_total{outcome="rejected"}')
    event_id, payload = synthetic_event()
    signature: str | None = sign(payload, webhook_endpoint.secret)
    body = payload
    if forgery == "other_secret":
        signature = sign(payload, "whsec_" + secrets.token_hex(16))
    elif forgery == "tampered_body":
        body = payload.replace('"livemode": false', '"livemode": true')
        assert body != payload
    elif forgery == "no_header":
        signature = None
    elif forgery == "garbage_header":
        signature = "not-a-signature"
    elif forgery == "no_v1":
        signature = f"t={int(time.time())},v0=abc"
    reply = deliver(stripe_service, body, signature)
    assert (reply.status, reply.json()["error"]["code"]) == (400, "invalid_signature")
    assert not event_rows(postgres, "id = %s", event_id)
    assert stripe_service.metric('stripe_webhook_events_total{outcome="rejected"}') == rejected + 1


def test_stale_signature_is_400_but_a_recent_one_passes(stripe_service: RunningService,
                                                        webhook_endpoint: WebhookEndpoint, postgres: Postgres) -> None:
    event_id, payload = synthetic_event()
    stale = deliver(stripe_service, payload, sign(payload, webhook_endpoint.secret, int(time.time()) - TOLERANCE_S - 60))
    assert (stale.status, stale.json()["error"]["code"]) == (400, "invalid_signature")
    assert "tolerance" in stale.json()["error"]["message"]
    assert not event_rows(postgres, "id = %s", event_id)
    recent = deliver(stripe_service, payload, sign(payload, webhook_endpoint.secret, int(time.time()) - TOLERANCE_S // 2))
    assert recent.status == 200
    assert len(event_rows(postgres, "id = %s", event_id)) == 1


def test_signed_body_that_is_no_event_is_400(stripe_service: RunningService, webhook_endpoint: WebhookEndpoint) -> None:
    for payload in ('{"id": "not-an-event"}', "[1, 2]"):
        reply = deliver(stripe_service, payload, sign(payload, webhook_endpoint.secret))
        assert (reply.status, reply.json()["error"]["code"]) == (400, "invalid_payload")


def test_oversized_delivery_is_413(stripe_service: RunningService, webhook_endpoint: WebhookEndpoint) -> None:
    _event_id, payload = synthetic_event("customer.created", {"id": "cus_big", "description": "x" * (1024 * 1024)})
    reply = deliver(stripe_service, payload, sign(payload, webhook_endpoint.secret))
    assert (reply.status, reply.json()["error"]["code"]) == (413, "payload_too_large")


def test_without_a_webhook_secret_deliveries_are_503(launcher: Callable[..., RunningService],
                                                     service_env: dict[str, str]) -> None:
    running = launcher({**service_env, "STRIPE_WEBHOOK_SECRET": ""})
    _event_id, payload = synthetic_event()
    reply = deliver(running, payload, sign(payload, "whsec_" + secrets.token_hex(8)))
    assert (reply.status, reply.json()["error"]["code"]) == (503, "not_configured")
    assert "STRIPE_WEBHOOK_SECRET is not set" in running.log()


def test_the_payment_instance_log_holds_no_secret(stripe_service: RunningService, webhook_endpoint: WebhookEndpoint,
                                                  secret_values: list[str], api_key: str) -> None:
    stripe_service.call("POST", "/v1/payments", token=api_key, headers={"Idempotency-Key": secrets.token_hex(8)},
                        body={"amount": 900, "currency": "eur", "payment_method": "pm_card_chargeDeclined"})
    _event_id, payload = synthetic_event()
    deliver(stripe_service, payload, sign(payload, "whsec_" + secrets.token_hex(8)))
    log = stripe_service.log()
    assert "POST /v1/payments" in log and "webhook refused" in log  # the log is there and has seen both paths
    assert not [value for value in [*secret_values, webhook_endpoint.secret] if value in log]
