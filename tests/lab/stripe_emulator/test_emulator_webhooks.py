"""Webhook delivery: signed so that ``stripe.Webhook.construct_event`` accepts it, retried, and only where enabled."""

from __future__ import annotations

import json

import pytest
import stripe

from conftest import LIVE_CARD, LIVE_KEY, Emulator, Receiver, wait_until

CARD_ONLY = {"payment_method_types": ["card"]}


def endpoint(emu: Emulator, receiver: Receiver, events: list[str], key: str | None = None, **extra: object) -> stripe.WebhookEndpoint:
    client = emu.client(key) if key else emu.client()
    return client.v1.webhook_endpoints.create({"url": receiver.url, "enabled_events": events, **extra})  # type: ignore[arg-type]


def pay(emu: Emulator, key: str | None = None) -> stripe.PaymentIntent:
    client = emu.client(key) if key else emu.client()
    card = LIVE_CARD if key == LIVE_KEY else "pm_card_visa"
    return client.v1.payment_intents.create({"amount": 1500, "currency": "usd", "payment_method": card, "confirm": True,
                                             **CARD_ONLY})


def settled(emu: Emulator) -> list[dict]:
    """The delivery log once nothing is pending any more."""
    return wait_until(lambda: (rows := emu.deliveries()) and all(d["status"] != "pending" for d in rows) and rows, "deliveries to settle")


def test_signed_events_verify_with_the_sdk(emu: Emulator, receiver: Receiver) -> None:
    hook = endpoint(emu, receiver, ["*"])
    intent = pay(emu)
    wait_until(lambda: len(receiver.received) == 3, "three deliveries")
    types = []
    for request in receiver.received:
        assert request["headers"]["Content-Type"].startswith("application/json")
        event = stripe.Webhook.construct_event(request["body"], request["headers"]["Stripe-Signature"], hook.secret)
        assert isinstance(event, stripe.Event) and event.livemode is False
        types.append(event.type)
    assert sorted(types) == ["charge.succeeded", "payment_intent.created", "payment_intent.succeeded"]
    succeeded = next(json.loads(r["body"]) for r in receiver.received if json.loads(r["body"])["type"] == "payment_intent.succeeded")
    assert succeeded["data"]["object"]["id"] == intent.id
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(receiver.received[0]["body"], receiver.received[0]["headers"]["Stripe-Signature"],
                                       "whsec_not_the_secret")
    rows = settled(emu)
    assert {d["status"] for d in rows} == {"succeeded"} and {d["attempts"] for d in rows} == {1}
    for event in emu.client().v1.events.list().data:
        assert event.pending_webhooks == 0


def test_failed_delivery_is_retried_until_it_succeeds(emu: Emulator, receiver: Receiver) -> None:
    endpoint(emu, receiver, ["customer.created"])
    receiver.statuses = [500, 503]
    customer = emu.client().v1.customers.create({})
    rows = settled(emu)
    assert len(rows) == 1
    delivery = rows[0]
    assert delivery["status"] == "succeeded" and delivery["attempts"] == 3 and delivery["last_status"] == 200
    assert [h["status"] for h in delivery["history"]] == [500, 503, 200]
    assert [r["answered"] for r in receiver.received] == [500, 503, 200]
    assert {json.loads(r["body"])["id"] for r in receiver.received} == {delivery["event"]}
    event = emu.client().v1.events.retrieve(delivery["event"])
    assert event.pending_webhooks == 0 and event.data.object.id == customer.id


def test_delivery_gives_up_after_max_attempts(emu: Emulator, receiver: Receiver) -> None:
    """The shared emulator runs with --webhook-max-attempts 3."""
    endpoint(emu, receiver, ["customer.created"])
    receiver.statuses = [500] * 10
    emu.client().v1.customers.create({})
    delivery = settled(emu)[0]
    assert delivery["status"] == "failed" and delivery["attempts"] == 3 and delivery["last_status"] == 500
    assert len(receiver.received) == 3
    assert emu.client().v1.events.retrieve(delivery["event"]).pending_webhooks == 1


def test_unreachable_endpoint_is_a_failed_attempt(emu: Emulator) -> None:
    emu.client().v1.webhook_endpoints.create({"url": "http://127.0.0.1:9/nothing-listens", "enabled_events": ["*"]})
    emu.client().v1.customers.create({})
    delivery = settled(emu)[0]
    assert delivery["status"] == "failed" and delivery["last_status"] is None and delivery["last_error"]


def test_only_enabled_events_and_endpoints_get_deliveries(emu: Emulator, receiver: Receiver) -> None:
    wanted = endpoint(emu, receiver, ["charge.succeeded"])
    disabled = endpoint(emu, receiver, ["*"])
    emu.client().v1.webhook_endpoints.update(disabled.id, {"disabled": True})
    pay(emu)
    rows = settled(emu)
    assert [(d["endpoint"], d["event_type"]) for d in rows] == [(wanted.id, "charge.succeeded")]
    wait_until(lambda: receiver.received, "the delivery")
    assert [b["type"] for b in receiver.bodies()] == ["charge.succeeded"]
    succeeded = emu.client().v1.events.list({"type": "payment_intent.succeeded"}).data[0]
    assert succeeded.pending_webhooks == 0


def test_modes_are_kept_apart(emu: Emulator, receiver: Receiver) -> None:
    live_hook = endpoint(emu, receiver, ["*"], key=LIVE_KEY)
    pay(emu)  # test mode: not for the live endpoint
    pay(emu, LIVE_KEY)
    rows = settled(emu)
    assert {d["endpoint"] for d in rows} == {live_hook.id} and all(d["livemode"] for d in rows)
    for request in receiver.received:
        assert stripe.Webhook.construct_event(request["body"], request["headers"]["Stripe-Signature"], live_hook.secret).livemode is True


def test_pinned_api_version_is_in_the_payload(emu: Emulator, receiver: Receiver) -> None:
    endpoint(emu, receiver, ["customer.created"], api_version="2024-06-20")
    emu.client().v1.customers.create({})
    wait_until(lambda: receiver.received, "the delivery")
    assert receiver.bodies()[0]["api_version"] == "2024-06-20"


def test_deleted_endpoint_gets_nothing_more(emu: Emulator, receiver: Receiver) -> None:
    hook = endpoint(emu, receiver, ["customer.created"])
    emu.client().v1.webhook_endpoints.delete(hook.id)
    emu.client().v1.customers.create({})
    assert emu.deliveries() == []
    assert emu.client().v1.events.list().data[0].pending_webhooks == 0


def test_signature_header_format(emu: Emulator, receiver: Receiver) -> None:
    hook = endpoint(emu, receiver, ["customer.created"])
    emu.client().v1.customers.create({})
    wait_until(lambda: receiver.received, "the delivery")
    header = receiver.received[0]["headers"]["Stripe-Signature"]
    parts = dict(p.split("=", 1) for p in header.split(","))
    assert set(parts) == {"t", "v1"} and parts["t"].isdigit() and len(parts["v1"]) == 64
    stripe.WebhookSignature.verify_header(receiver.received[0]["body"], header, hook.secret, tolerance=300)
