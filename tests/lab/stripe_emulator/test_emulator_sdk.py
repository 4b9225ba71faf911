"""The official ``stripe`` SDK against the emulator: every endpoint, typed objects, errors as the SDK raises them."""

from __future__ import annotations

import pytest
import stripe

from conftest import ACCOUNT, LIVE_CARD, LIVE_KEY, TEST_KEY, Emulator

CARD_ONLY = {"payment_method_types": ["card"]}
DECLINES = [
    ("pm_card_chargeDeclined", "card_declined", "generic_decline"),
    ("pm_card_chargeDeclinedInsufficientFunds", "card_declined", "insufficient_funds"),
    ("pm_card_chargeDeclinedLostCard", "card_declined", "lost_card"),
    ("pm_card_chargeDeclinedStolenCard", "card_declined", "stolen_card"),
    ("pm_card_chargeDeclinedExpiredCard", "expired_card", "expired_card"),
    ("pm_card_chargeDeclinedIncorrectCvc", "incorrect_cvc", "incorrect_cvc"),
    ("pm_card_chargeDeclinedProcessingError", "processing_error", "processing_error"),
    ("pm_card_chargeDeclinedFraudulent", "card_declined", "fraudulent"),
]


def test_balance_and_account(emu: Emulator) -> None:
    client = emu.client()
    balance = client.v1.balance.retrieve()
    assert isinstance(balance, stripe.Balance) and balance.livemode is False
    assert emu.client(LIVE_KEY).v1.balance.retrieve().livemode is True
    account = client.v1.accounts.retrieve_current()
    assert isinstance(account, stripe.Account) and account.id == ACCOUNT and account.charges_enabled


def test_payment_that_succeeds(emu: Emulator) -> None:
    client = emu.client()
    intent = client.v1.payment_intents.create({"amount": 1999, "currency": "usd", "payment_method": "pm_card_mastercard",
                                               "confirm": True, **CARD_ONLY, "metadata": {"order": "o-1"}, "expand": ["latest_charge"]})
    assert isinstance(intent, stripe.PaymentIntent)
    assert intent.status == "succeeded" and intent.amount_received == 1999 and intent.livemode is False
    charge = intent.latest_charge
    assert isinstance(charge, stripe.Charge)
    assert charge.paid and charge.captured and charge.status == "succeeded" and charge.balance_transaction.startswith("txn_")
    assert charge.payment_method_details.card.brand == "mastercard" and charge.payment_method_details.card.last4 == "4444"
    assert charge.metadata["order"] == "o-1"
    # A test token is not a payment method: Stripe makes a new pm_ for each use, and so does the emulator.
    assert intent.payment_method.startswith("pm_") and intent.payment_method != "pm_card_mastercard"
    pm = client.v1.payment_methods.retrieve(intent.payment_method)
    assert isinstance(pm, stripe.PaymentMethod) and pm.card.brand == "mastercard"
    txn = client.v1.balance_transactions.retrieve(charge.balance_transaction)
    assert isinstance(txn, stripe.BalanceTransaction) and txn.amount == 1999 and txn.source == charge.id
    assert client.v1.payment_intents.retrieve(intent.id).latest_charge == charge.id
    assert client.v1.charges.retrieve(charge.id).payment_intent == intent.id
    assert client.v1.balance.retrieve().pending[0].amount == 1999


def test_payment_in_two_steps_with_customer(emu: Emulator) -> None:
    client = emu.client()
    customer = client.v1.customers.create({"email": "buyer@example.com"})
    intent = client.v1.payment_intents.create({"amount": 5000, "currency": "eur", "customer": customer.id,
                                               "automatic_payment_methods": {"enabled": True, "allow_redirects": "never"}})
    assert intent.status == "requires_payment_method" and intent.automatic_payment_methods.allow_redirects == "never"
    intent = client.v1.payment_intents.update(intent.id, {"description": "two steps", "metadata": {"a": "1"}})
    assert intent.description == "two steps"
    intent = client.v1.payment_intents.confirm(intent.id, {"payment_method": "pm_card_amex"})
    assert intent.status == "succeeded"
    charges = client.v1.charges.list({"customer": customer.id})
    assert [c.payment_intent for c in charges.data] == [intent.id]
    assert [i.id for i in client.v1.payment_intents.list({"customer": customer.id}).data] == [intent.id]


@pytest.mark.parametrize(("token", "code", "decline_code"), DECLINES)
def test_declines_raise_card_error(emu: Emulator, token: str, code: str, decline_code: str) -> None:
    client = emu.client()
    with pytest.raises(stripe.CardError) as caught:
        client.v1.payment_intents.create({"amount": 1000, "currency": "usd", "payment_method": token, "confirm": True, **CARD_ONLY})
    err = caught.value
    assert err.http_status == 402 and err.code == code
    assert err.error.decline_code == decline_code
    assert err.request_id and err.request_id.startswith("req_")
    intent = err.error.payment_intent
    assert intent.status == "requires_payment_method"
    assert intent.last_payment_error.decline_code == decline_code and intent.last_payment_error.charge == err.error.charge
    charge = client.v1.charges.retrieve(err.error.charge)
    assert charge.status == "failed" and not charge.paid and charge.failure_code == code
    assert client.v1.payment_intents.retrieve(intent.id).status == "requires_payment_method"


def test_retry_after_decline_with_another_card(emu: Emulator) -> None:
    client = emu.client()
    with pytest.raises(stripe.CardError) as caught:
        client.v1.payment_intents.create({"amount": 1000, "currency": "usd", "payment_method": "pm_card_chargeDeclined", "confirm": True,
                                          **CARD_ONLY})
    intent_id = caught.value.error.payment_intent.id
    intent = client.v1.payment_intents.confirm(intent_id, {"payment_method": "pm_card_visa"})
    assert intent.status == "succeeded" and intent.last_payment_error is None
    assert len(client.v1.charges.list({"payment_intent": intent_id}).data) == 2


def test_return_url_rule(emu: Emulator) -> None:
    client = emu.client()
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.payment_intents.create({"amount": 1000, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True})
    assert "you must provide a `return_url`" in caught.value.user_message
    assert caught.value.http_status == 400
    assert client.v1.payment_intents.list().data == []  # the failed create made nothing
    ok = client.v1.payment_intents.create({"amount": 1000, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True,
                                           "return_url": "https://shop.example.com/done"})
    assert ok.status == "succeeded" and ok.automatic_payment_methods.enabled
    later = client.v1.payment_intents.create({"amount": 1000, "currency": "usd"})
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.payment_intents.confirm(later.id, {"payment_method": "pm_card_visa"})
    assert client.v1.payment_intents.confirm(later.id, {"payment_method": "pm_card_visa", "return_url": "https://x.example/r"}).status \
        == "succeeded"


def test_unknown_payment_method(emu: Emulator) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        emu.client().v1.payment_intents.create({"amount": 1000, "currency": "usd", "payment_method": "pm_nope", "confirm": True,
                                                **CARD_ONLY})
    assert caught.value.http_status == 400 and caught.value.code == "resource_missing" and caught.value.param == "payment_method"


def test_cancel(emu: Emulator) -> None:
    client = emu.client()
    intent = client.v1.payment_intents.create({"amount": 1000, "currency": "usd"})
    canceled = client.v1.payment_intents.cancel(intent.id, {"cancellation_reason": "abandoned"})
    assert canceled.status == "canceled" and canceled.cancellation_reason == "abandoned" and canceled.canceled_at
    paid = client.v1.payment_intents.create({"amount": 1000, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True,
                                             **CARD_ONLY})
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.payment_intents.cancel(paid.id)
    assert caught.value.code == "payment_intent_unexpected_state"
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.payment_intents.confirm(paid.id)
    assert caught.value.code == "payment_intent_unexpected_state"


def test_refunds(emu: Emulator) -> None:
    client = emu.client()
    intent = client.v1.payment_intents.create({"amount": 3000, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True,
                                               **CARD_ONLY})
    partial = client.v1.refunds.create({"payment_intent": intent.id, "amount": 1000, "reason": "requested_by_customer"})
    assert isinstance(partial, stripe.Refund) and partial.status == "succeeded" and partial.amount == 1000
    charge = client.v1.payment_intents.retrieve(intent.id, {"expand": ["latest_charge"]}).latest_charge
    assert charge.amount_refunded == 1000 and charge.refunded is False
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.refunds.create({"charge": charge.id, "amount": 2500})
    assert caught.value.param == "amount" and "is greater than unrefunded amount on charge ($20.00)" in caught.value.user_message
    rest = client.v1.refunds.create({"charge": charge.id, "expand": ["charge"]})
    assert rest.amount == 2000 and isinstance(rest.charge, stripe.Charge) and rest.charge.refunded is True
    assert rest.charge.amount_refunded == 3000 and [r.id for r in rest.charge.refunds.data] == [rest.id, partial.id]
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.refunds.create({"payment_intent": intent.id})
    assert caught.value.code == "charge_already_refunded"
    assert [r.id for r in client.v1.refunds.list({"payment_intent": intent.id}).data] == [rest.id, partial.id]
    assert client.v1.refunds.retrieve(partial.id).charge == charge.id
    assert client.v1.balance.retrieve().pending[0].amount == 0


def test_customers(emu: Emulator) -> None:
    client = emu.client()
    customer = client.v1.customers.create({"email": "c@example.com", "name": "C", "metadata": {"tier": "gold", "drop": "me"}})
    assert isinstance(customer, stripe.Customer) and customer.id.startswith("cus_")
    customer = client.v1.customers.update(customer.id, {"phone": "+15550100", "metadata": {"drop": ""}})
    assert customer.phone == "+15550100" and customer.metadata.to_dict() == {"tier": "gold"}
    assert client.v1.customers.retrieve(customer.id).email == "c@example.com"
    assert [c.id for c in client.v1.customers.list({"email": "c@example.com"}).data] == [customer.id]
    deleted = client.v1.customers.delete(customer.id)
    assert deleted.deleted is True and deleted.id == customer.id
    assert client.v1.customers.retrieve(customer.id).deleted is True
    assert client.v1.customers.list().data == []
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.customers.update(customer.id, {"name": "x"})
    assert caught.value.http_status == 404 and caught.value.code == "resource_missing"


def test_invoice_paid_with_the_default_payment_method(emu: Emulator) -> None:
    client = emu.client()
    customer = client.v1.customers.create({"invoice_settings": {"default_payment_method": "pm_card_visa"}})
    invoice = client.v1.invoices.create({"customer": customer.id, "auto_advance": False, "collection_method": "charge_automatically"})
    assert isinstance(invoice, stripe.Invoice) and invoice.status == "draft" and invoice.number is None
    for amount in (1200, 800):
        item = client.v1.invoice_items.create({"customer": customer.id, "amount": amount, "currency": "usd", "invoice": invoice.id,
                                               "description": f"item {amount}"})
        assert isinstance(item, stripe.InvoiceItem) and item.invoice == invoice.id
    finalized = client.v1.invoices.finalize_invoice(invoice.id)
    assert finalized.status == "open" and finalized.amount_due == 2000 and finalized.number == f"{customer.invoice_prefix}-0001"
    paid = client.v1.invoices.pay(invoice.id)
    assert paid.status == "paid" and paid.amount_paid == 2000 and paid.amount_remaining == 0 and paid.status_transitions.paid_at
    lines = client.v1.invoices.line_items.list(invoice.id)
    assert [line.amount for line in lines.data] == [1200, 800]  # in the invoice's order, as embedded in the invoice
    assert all(isinstance(line, stripe.InvoiceLineItem) for line in lines.data)
    assert [line.id for line in lines.data] == [line.id for line in paid.lines.data]
    second = client.v1.invoices.line_items.list(invoice.id, {"limit": 1, "starting_after": lines.data[0].id})
    assert [line.amount for line in second.data] == [800] and not second.has_more
    assert [i.id for i in client.v1.invoices.list({"customer": customer.id, "status": "paid"}).data] == [invoice.id]
    assert {i.amount for i in client.v1.invoice_items.list({"invoice": invoice.id}).data} == {800, 1200}
    assert client.v1.invoices.retrieve(invoice.id).status == "paid"
    charge = client.v1.charges.list({"customer": customer.id}).data[0]
    assert charge.amount == 2000 and charge.paid


def test_invoice_payment_declined_then_paid(emu: Emulator) -> None:
    client = emu.client()
    customer = client.v1.customers.create({})
    invoice = client.v1.invoices.create({"customer": customer.id})
    client.v1.invoice_items.create({"customer": customer.id, "amount": 700, "currency": "usd", "invoice": invoice.id})
    client.v1.invoices.finalize_invoice(invoice.id)
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.invoices.pay(invoice.id)  # no payment method anywhere
    with pytest.raises(stripe.CardError) as caught:
        client.v1.invoices.pay(invoice.id, {"payment_method": "pm_card_chargeDeclinedInsufficientFunds"})
    assert caught.value.error.decline_code == "insufficient_funds"
    still_open = client.v1.invoices.retrieve(invoice.id)
    assert still_open.status == "open" and still_open.attempt_count == 1 and still_open.attempted
    assert client.v1.invoices.pay(invoice.id, {"payment_method": "pm_card_visa"}).status == "paid"
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.invoices.finalize_invoice(invoice.id)


def test_webhook_endpoints(emu: Emulator) -> None:
    client = emu.client()
    created = client.v1.webhook_endpoints.create({"url": "https://hooks.example.com/stripe", "enabled_events": ["charge.succeeded"],
                                                  "description": "lab", "api_version": "2024-06-20", "metadata": {"owner": "sre"}})
    assert isinstance(created, stripe.WebhookEndpoint) and created.secret.startswith("whsec_") and created.status == "enabled"
    assert created.api_version == "2024-06-20"
    updated = client.v1.webhook_endpoints.update(created.id, {"disabled": True, "enabled_events": ["*"]})
    assert updated.status == "disabled" and updated.enabled_events == ["*"] and "secret" not in updated
    assert client.v1.webhook_endpoints.retrieve(created.id).description == "lab"
    assert [e.id for e in client.v1.webhook_endpoints.list().data] == [created.id]
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.webhook_endpoints.update(created.id, {"api_version": "2024-06-20"})  # type: ignore[typeddict-unknown-key]
    assert caught.value.code == "parameter_unknown" and caught.value.param == "api_version"
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.webhook_endpoints.create({"url": "https://x.example", "enabled_events": ["charge.exploded"]})  # type: ignore[list-item]
    assert caught.value.param == "enabled_events[0]"
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.webhook_endpoints.create({"url": "http://hooks.example.com/", "enabled_events": ["*"]})
    assert caught.value.param == "url"
    local = client.v1.webhook_endpoints.create({"url": "http://localhost:9/hook", "enabled_events": ["*"]})
    assert local.url == "http://localhost:9/hook"
    deleted = client.v1.webhook_endpoints.delete(created.id)
    assert deleted.deleted is True
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.webhook_endpoints.retrieve(created.id)
    assert caught.value.http_status == 404


def test_events(emu: Emulator) -> None:
    client = emu.client()
    customer = client.v1.customers.create({})
    intent = client.v1.payment_intents.create({"amount": 1000, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True,
                                               "customer": customer.id, **CARD_ONLY}, options={"idempotency_key": "order-42"})
    every = client.v1.events.list({"limit": 100}).data
    assert [e.type for e in every] == ["payment_intent.succeeded", "charge.succeeded", "payment_intent.created", "customer.created"]
    event = client.v1.events.retrieve(every[0].id)
    assert isinstance(event, stripe.Event) and event.data.object.id == intent.id and event.data.object.status == "succeeded"
    assert event.request.idempotency_key == "order-42" and event.request.id.startswith("req_")
    assert event.api_version == stripe.api_version and event.livemode is False
    assert [e.type for e in client.v1.events.list({"type": "charge.succeeded"}).data] == ["charge.succeeded"]
    assert len(client.v1.events.list({"type": "payment_intent.*"}).data) == 2
    assert len(client.v1.events.list({"types": ["customer.created", "charge.succeeded"]}).data) == 2
    assert len(client.v1.events.list({"created": {"gte": every[-1].created}}).data) == 4
    assert client.v1.events.list({"created": {"lt": every[-1].created}}).data == []
    assert client.v1.events.list({"limit": 1}, options={"api_key": LIVE_KEY}).data == []


def test_authentication_error(emu: Emulator) -> None:
    bad = "sk_test_51ThisKeyIsNotKnown0000zz99"
    with pytest.raises(stripe.AuthenticationError) as caught:
        emu.client(bad).v1.customers.list()
    assert caught.value.http_status == 401 and caught.value.request_id.startswith("req_")
    assert bad not in str(caught.value) and "sk_test_" in str(caught.value) and str(caught.value).rstrip().endswith("zz99")


def test_idempotency_replay_and_mismatch(emu: Emulator) -> None:
    client = emu.client()
    first = client.v1.customers.create({"email": "once@example.com"}, options={"idempotency_key": "cust-1"})
    again = client.v1.customers.create({"email": "once@example.com"}, options={"idempotency_key": "cust-1"})
    assert again.id == first.id
    assert len(client.v1.customers.list().data) == 1
    assert len(client.v1.events.list({"type": "customer.created"}).data) == 1
    with pytest.raises(stripe.IdempotencyError) as caught:
        client.v1.customers.create({"email": "other@example.com"}, options={"idempotency_key": "cust-1"})
    assert "Try using a key other than 'cust-1'" in caught.value.user_message
    # Keys are scoped by mode: the same key in live mode is a new request.
    live = client.v1.customers.create({"email": "once@example.com"}, options={"idempotency_key": "cust-1", "api_key": LIVE_KEY})
    assert live.id != first.id and live.livemode is True


def test_idempotent_decline_is_replayed(emu: Emulator) -> None:
    client = emu.client()
    params = {"amount": 1000, "currency": "usd", "payment_method": "pm_card_chargeDeclined", "confirm": True, **CARD_ONLY}
    errors = []
    for _attempt in range(2):
        with pytest.raises(stripe.CardError) as caught:
            client.v1.payment_intents.create(params, options={"idempotency_key": "decline-1"})  # type: ignore[arg-type]
        errors.append(caught.value)
    assert errors[0].error.payment_intent.id == errors[1].error.payment_intent.id
    assert errors[1].headers.get("idempotent-replayed") == "true"
    assert len(client.v1.charges.list().data) == 1


def test_auto_pagination_walks_every_object(emu: Emulator) -> None:
    client = emu.client()
    made = [client.v1.customers.create({"name": f"n{i}"}).id for i in range(25)]
    page = client.v1.customers.list({"limit": 10})
    assert page.has_more and [c.id for c in page.data] == made[::-1][:10]
    assert [c.id for c in page.auto_paging_iter()] == made[::-1]
    assert [c.id for c in client.v1.customers.list({"limit": 100}).data] == made[::-1]


def test_livemode_follows_the_key(emu: Emulator) -> None:
    live = emu.client(LIVE_KEY)
    intent = live.v1.payment_intents.create({"amount": 1000, "currency": "usd", "payment_method": LIVE_CARD, "confirm": True,
                                             **CARD_ONLY, "expand": ["latest_charge"]})
    assert intent.livemode is True and intent.latest_charge.livemode is True
    with pytest.raises(stripe.InvalidRequestError) as caught:
        emu.client(TEST_KEY).v1.payment_intents.retrieve(intent.id)
    assert "exists in live mode, but a test mode key was used" in caught.value.user_message


def test_test_card_is_declined_in_live_mode(emu: Emulator) -> None:
    """As Stripe: a known test card with a live key is declined; the live card works only in live mode."""
    with pytest.raises(stripe.CardError) as caught:
        emu.client(LIVE_KEY).v1.payment_intents.create({"amount": 1000, "currency": "usd", "payment_method": "pm_card_visa",
                                                        "confirm": True, **CARD_ONLY})
    assert caught.value.code == "card_declined"
    assert caught.value.error.decline_code == "test_mode_live_card"
    with pytest.raises(stripe.InvalidRequestError):
        emu.client(TEST_KEY).v1.payment_intents.create({"amount": 1000, "currency": "usd", "payment_method": LIVE_CARD,
                                                        "confirm": True, **CARD_ONLY})


def test_failed_validation_does_not_use_up_the_key(emu: Emulator) -> None:
    """Stripe keeps no idempotent result for a request that failed validation: the key can be used again."""
    client = emu.client()
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.payment_intents.create({"amount": 10, "currency": "usd"}, options={"idempotency_key": "fix-and-retry"})
    fixed = client.v1.payment_intents.create({"amount": 1000, "currency": "usd"}, options={"idempotency_key": "fix-and-retry"})
    assert fixed.amount == 1000


def test_invoice_variants(emu: Emulator) -> None:
    client = emu.client()
    customer = client.v1.customers.create({})
    pending = client.v1.invoice_items.create({"customer": customer.id, "amount": 300, "currency": "usd"})
    assert pending.invoice is None
    assert [i.id for i in client.v1.invoice_items.list({"pending": True}).data] == [pending.id]
    excluded = client.v1.invoices.create({"customer": customer.id})
    assert excluded.amount_due == 0 and excluded.lines.data == []
    included = client.v1.invoices.create({"customer": customer.id, "pending_invoice_items_behavior": "include"})
    assert included.amount_due == 300 and client.v1.invoice_items.retrieve(pending.id).invoice == included.id
    out_of_band = client.v1.invoices.pay(included.id, {"paid_out_of_band": True})
    assert out_of_band.status == "paid" and out_of_band.amount_paid == 300 and out_of_band.number
    assert client.v1.charges.list().data == []
    nothing_due = client.v1.invoices.finalize_invoice(excluded.id)
    assert nothing_due.status == "paid" and nothing_due.amount_paid == 0
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.invoices.create({"customer": customer.id, "collection_method": "send_invoice"})
    assert caught.value.param == "days_until_due"
    sent = client.v1.invoices.create({"customer": customer.id, "collection_method": "send_invoice", "days_until_due": 30})
    assert sent.due_date == sent.created + 30 * 86400
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.invoice_items.create({"customer": customer.id, "amount": 1, "currency": "usd", "invoice": included.id})
    assert caught.value.code == "invoice_not_editable"
    item = client.v1.invoice_items.create({"customer": customer.id, "amount": 50, "currency": "usd", "invoice": sent.id})
    assert client.v1.invoices.retrieve(sent.id).amount_due == 50
    assert client.v1.invoice_items.delete(item.id).deleted is True
    assert client.v1.invoices.retrieve(sent.id).amount_due == 0
    assert customer.invoice_prefix and client.v1.customers.retrieve(customer.id).next_invoice_sequence == 3


def test_connected_accounts_are_refused(emu: Emulator) -> None:
    client = stripe.StripeClient(TEST_KEY, base_addresses={"api": emu.url}, stripe_account="acct_1SomeConnectedAccount")
    with pytest.raises(stripe.PermissionError) as caught:
        client.v1.customers.list()
    assert caught.value.http_status == 403 and "does not have access to account 'acct_1SomeConnectedAccount'" in str(caught.value)
    assert TEST_KEY not in str(caught.value)
    own = stripe.StripeClient(TEST_KEY, base_addresses={"api": emu.url}, stripe_account=ACCOUNT)
    assert own.v1.customers.list().data == []
