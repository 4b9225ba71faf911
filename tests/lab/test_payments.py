"""Payments, refunds and invoices through the service against the Stripe emulator, PostgreSQL and Redis."""

from __future__ import annotations

import secrets
import socket
import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Iterator

import psycopg
import pytest

if TYPE_CHECKING:
    from conftest import Postgres, Reply, RunningService, StripeEmulator

pytestmark = pytest.mark.timeout(180)

VISA = "pm_card_visa"
DECLINED = "pm_card_chargeDeclinedInsufficientFunds"


def eventually(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    """Poll check until it holds; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)


def new_key() -> str:
    return "key-" + secrets.token_hex(8)


def pay(service: RunningService, api_key: str, key: str | None, **body: Any) -> Reply:
    body = {"amount": 2500, "currency": "eur", "payment_method": VISA, **body}
    headers = {"Idempotency-Key": key} if key else {}
    return service.call("POST", "/v1/payments", token=api_key, body=body, headers=headers)


def payment_rows(postgres: Postgres, column: str, value: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(postgres.admin_dsn()) as conn:
        return conn.execute(f"SELECT id, stripe_payment_intent_id, status, amount, currency, idempotency_key "
                            f"FROM payments WHERE {column} = %s", (value,)).fetchall()


def intents_of(emulator: StripeEmulator, payment_id: str) -> list[Any]:
    """The PaymentIntents at Stripe whose metadata names this payment."""
    listed = emulator.client().v1.payment_intents.list({"limit": 100})
    return [intent for intent in listed.auto_paging_iter() if intent.metadata.to_dict().get("payment_id") == payment_id]


def test_payment_succeeds_and_the_row_holds_the_intent(stripe_service: RunningService, stripe_emulator: StripeEmulator,
                                                       postgres: Postgres, api_key: str) -> None:
    succeeded = stripe_service.metric('payments_total{outcome="succeeded"}')
    key = new_key()
    reply = pay(stripe_service, api_key, key, amount=4200, currency="EUR", description="order 42")
    assert reply.status == 201, reply.body
    payment = reply.json()
    assert payment["id"].startswith("pay_") and payment["stripe_payment_intent_id"].startswith("pi_")
    assert (payment["amount"], payment["currency"], payment["status"]) == (4200, "eur", "succeeded")
    assert payment_rows(postgres, "id", payment["id"]) == [
        (payment["id"], payment["stripe_payment_intent_id"], "succeeded", 4200, "eur", key)]
    intent = stripe_emulator.client().v1.payment_intents.retrieve(payment["stripe_payment_intent_id"])
    assert (intent.status, intent.amount, intent.currency) == ("succeeded", 4200, "eur")
    assert intent.metadata["payment_id"] == payment["id"] and intent.description == "order 42"
    assert intent.payment_method_types == ["card"]
    assert stripe_service.metric('payments_total{outcome="succeeded"}') == succeeded + 1
    fetched = stripe_service.call("GET", f"/v1/payments/{payment['id']}", token=api_key)
    assert fetched.status == 200
    assert {name: value for name, value in fetched.json().items() if name != "webhook_events"} == payment


def test_same_idempotency_key_twice_charges_once(stripe_service: RunningService, stripe_emulator: StripeEmulator,
                                                 postgres: Postgres, api_key: str) -> None:
    key = new_key()
    first = pay(stripe_service, api_key, key)
    second = pay(stripe_service, api_key, key)
    assert (first.status, second.status) == (201, 200)
    assert second.json() == first.json()
    assert len(payment_rows(postgres, "idempotency_key", key)) == 1
    assert len(intents_of(stripe_emulator, first.json()["id"])) == 1


def test_concurrent_duplicates_make_one_row_and_one_intent(stripe_service: RunningService,
                                                           stripe_emulator: StripeEmulator, postgres: Postgres,
                                                           api_key: str) -> None:
    key, replies = new_key(), []
    barrier = threading.Barrier(6)

    def attempt() -> None:
        barrier.wait()
        replies.append(pay(stripe_service, api_key, key, amount=777))

    threads = [threading.Thread(target=attempt) for _unused in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(reply.status for reply in replies) == [200] * 5 + [201], [r.body for r in replies]
    assert len({reply.json()["stripe_payment_intent_id"] for reply in replies}) == 1
    assert len(payment_rows(postgres, "idempotency_key", key)) == 1
    assert len(intents_of(stripe_emulator, replies[0].json()["id"])) == 1


def test_payments_work_on_the_schema_with_the_description_column(stripe_service: RunningService,
                                                                 postgres: Postgres, api_key: str) -> None:
    # Release 1.1.0's expand migration adds a nullable payments.description; the service neither needs nor writes it.
    with psycopg.connect(postgres.admin_dsn(), autocommit=True) as conn:
        conn.execute("ALTER TABLE payments ADD COLUMN description text")
    try:
        reply = pay(stripe_service, api_key, new_key(), description="kept at Stripe only")
        assert reply.status == 201, reply.body
        with psycopg.connect(postgres.admin_dsn()) as conn:
            row = conn.execute("SELECT description FROM payments WHERE id = %s", (reply.json()["id"],)).fetchone()
        assert row == (None,)
    finally:
        with psycopg.connect(postgres.admin_dsn(), autocommit=True) as conn:
            conn.execute("ALTER TABLE payments DROP COLUMN description")


def test_key_reused_for_another_payment_is_409(stripe_service: RunningService, api_key: str) -> None:
    key = new_key()
    assert pay(stripe_service, api_key, key, amount=1000).status == 201
    reused = pay(stripe_service, api_key, key, amount=2000)
    assert (reused.status, reused.json()["error"]["code"]) == (409, "idempotency_key_reused")
    assert reused.json()["error"]["type"] == "idempotency_error"


def test_idempotency_key_is_required(stripe_service: RunningService, stripe_emulator: StripeEmulator,
                                     api_key: str) -> None:
    before = len(stripe_emulator.client().v1.payment_intents.list({"limit": 100}).data)
    reply = pay(stripe_service, api_key, None)
    assert (reply.status, reply.json()["error"]["code"]) == (400, "idempotency_key_required")
    assert len(stripe_emulator.client().v1.payment_intents.list({"limit": 100}).data) == before


@pytest.mark.parametrize("change, code", [
    ({"amount": 49}, "invalid_amount"), ({"amount": 100_000_000}, "invalid_amount"), ({"amount": "2500"}, "invalid_amount"),
    ({"amount": True}, "invalid_amount"), ({"currency": "eu"}, "invalid_currency"), ({"currency": "e1r"}, "invalid_currency"),
    ({"payment_method": "card_123"}, "invalid_payment_method"), ({"customer_id": "x"}, "invalid_customer_id"),
    ({"tip": 5}, "invalid_request"), ({"customer_id": "cus_doesnotexist"}, "customer_not_found"),
])
def test_invalid_payment_is_400_before_stripe(stripe_service: RunningService, api_key: str, change: dict[str, Any],
                                              code: str) -> None:
    reply = pay(stripe_service, api_key, new_key(), **change)
    assert (reply.status, reply.json()["error"]["code"]) == (400, code)


def test_payment_endpoints_need_the_api_key(stripe_service: RunningService, admin_key: str) -> None:
    assert pay(stripe_service, "", new_key()).status == 401
    assert pay(stripe_service, admin_key, new_key()).status == 403
    assert stripe_service.call("GET", "/v1/payments/pay_x").status == 401


def test_declined_card_is_402_and_a_failed_row(stripe_service: RunningService, stripe_emulator: StripeEmulator,
                                               postgres: Postgres, api_key: str) -> None:
    failed = stripe_service.metric('payments_total{outcome="failed"}')
    key = new_key()
    reply = pay(stripe_service, api_key, key, payment_method=DECLINED)
    assert reply.status == 402, reply.body
    error = reply.json()["error"]
    assert (error["type"], error["code"], error["decline_code"]) == ("card_error", "card_declined", "insufficient_funds")
    assert error["stripe_request_id"].startswith("req_")
    rows = payment_rows(postgres, "idempotency_key", key)
    assert [(row[0], row[1], row[2]) for row in rows] == [(error["payment_id"], error["stripe_payment_intent_id"], "failed")]
    intent = stripe_emulator.client().v1.payment_intents.retrieve(error["stripe_payment_intent_id"])
    assert intent.status == "requires_payment_method"
    assert stripe_service.metric('payments_total{outcome="failed"}') == failed + 1
    replay = pay(stripe_service, api_key, key, payment_method=DECLINED)
    assert (replay.status, replay.json()["status"], replay.json()["id"]) == (200, "failed", error["payment_id"])
    assert len(intents_of(stripe_emulator, error["payment_id"])) == 1


def test_unknown_payment_method_is_refused_by_stripe(stripe_service: RunningService, postgres: Postgres,
                                                     api_key: str) -> None:
    key = new_key()
    reply = pay(stripe_service, api_key, key, payment_method="pm_card_doesnotexist")
    assert reply.status == 400, reply.body
    error = reply.json()["error"]
    assert (error["type"], error["code"]) == ("invalid_request_error", "stripe_invalid_request")
    assert reply.json()["error"]["param"] == "payment_method"
    assert not payment_rows(postgres, "idempotency_key", key)


def test_lookup_by_intent_and_unknown_ids(stripe_service: RunningService, api_key: str) -> None:
    payment = pay(stripe_service, api_key, new_key()).json()
    by_intent = stripe_service.call("GET", f"/v1/payments/by-intent/{payment['stripe_payment_intent_id']}",
                                    token=api_key)
    assert (by_intent.status, by_intent.json()) == (200, {"source": "database", **payment})
    for path in ("/v1/payments/pay_unknown", "/v1/payments/by-intent/pi_unknown"):
        missing = stripe_service.call("GET", path, token=api_key)
        assert (missing.status, missing.json()["error"]["code"]) == (404, "payment_not_found")


def refund(service: RunningService, api_key: str, payment_id: str, key: str, amount: int | None = None) -> Reply:
    body = {} if amount is None else {"amount": amount}
    return service.call("POST", f"/v1/payments/{payment_id}/refunds", token=api_key, body=body,
                        headers={"Idempotency-Key": key})


def test_partial_then_full_refund(stripe_service: RunningService, stripe_emulator: StripeEmulator, postgres: Postgres,
                                  api_key: str) -> None:
    refunds = stripe_service.metric("refunds_total")
    payment = pay(stripe_service, api_key, new_key(), amount=3000).json()
    key = new_key()
    partial = refund(stripe_service, api_key, payment["id"], key, 1000)
    assert partial.status == 201, partial.body
    body = partial.json()
    assert body["id"].startswith("ref_") and body["stripe_refund_id"].startswith("re_")
    assert (body["amount"], body["status"], body["payment_status"]) == (1000, "succeeded", "partially_refunded")
    at_stripe = stripe_emulator.client().v1.refunds.retrieve(body["stripe_refund_id"])
    assert (at_stripe.amount, at_stripe.payment_intent) == (1000, payment["stripe_payment_intent_id"])
    replay = refund(stripe_service, api_key, payment["id"], key, 1000)
    assert (replay.status, replay.json()["id"]) == (200, body["id"])
    too_much = refund(stripe_service, api_key, payment["id"], new_key(), 2001)
    assert (too_much.status, too_much.json()["error"]["code"]) == (400, "invalid_amount")
    rest = refund(stripe_service, api_key, payment["id"], new_key())
    assert (rest.status, rest.json()["amount"], rest.json()["payment_status"]) == (201, 2000, "refunded")
    again = refund(stripe_service, api_key, payment["id"], new_key())
    assert (again.status, again.json()["error"]["code"]) == (409, "payment_not_refundable")
    with psycopg.connect(postgres.admin_dsn()) as conn:
        stored = conn.execute("SELECT amount, status FROM refunds WHERE payment_id = %s ORDER BY amount",
                              (payment["id"],)).fetchall()
    assert stored == [(1000, "succeeded"), (2000, "succeeded")]
    assert payment_rows(postgres, "id", payment["id"])[0][2] == "refunded"
    assert stripe_service.metric("refunds_total") == refunds + 2


def test_refund_needs_a_key_and_a_charged_payment(stripe_service: RunningService, api_key: str) -> None:
    declined = pay(stripe_service, api_key, new_key(), payment_method=DECLINED).json()["error"]["payment_id"]
    no_key = stripe_service.call("POST", f"/v1/payments/{declined}/refunds", token=api_key, body={})
    assert (no_key.status, no_key.json()["error"]["code"]) == (400, "idempotency_key_required")
    refused = refund(stripe_service, api_key, declined, new_key())
    assert (refused.status, refused.json()["error"]["code"]) == (409, "payment_not_refundable")
    missing = refund(stripe_service, api_key, "pay_unknown", new_key())
    assert missing.status == 404


def test_invoice_is_created_and_finalized(stripe_service: RunningService, stripe_emulator: StripeEmulator,
                                          api_key: str) -> None:
    customer = stripe_service.call("POST", "/v1/customers", token=api_key,
                                   body={"email": "grace@example.com", "name": "Grace Hopper"}).json()
    reply = stripe_service.call("POST", "/v1/invoices", token=api_key,
                                body={"customer_id": customer["id"], "amount": 12000, "currency": "usd",
                                      "description": "Consulting, March"})
    assert reply.status == 201, reply.body
    invoice = reply.json()
    assert invoice["invoice_id"].startswith("in_") and invoice["number"]
    assert (invoice["status"], invoice["amount_due"], invoice["currency"]) == ("open", 12000, "usd")
    at_stripe = stripe_emulator.client().v1.invoices.retrieve(invoice["invoice_id"])
    assert (at_stripe.status, at_stripe.amount_due, at_stripe.customer) == ("open", 12000, invoice["stripe_customer_id"])
    lines = stripe_emulator.client().v1.invoices.line_items.list(invoice["invoice_id"])
    assert [(line.amount, line.description) for line in lines.data] == [(12000, "Consulting, March")]
    stripe_customer = stripe_emulator.client().v1.customers.retrieve(invoice["stripe_customer_id"])
    assert (stripe_customer.email, stripe_customer.metadata["customer_id"]) == ("grace@example.com", customer["id"])
    unknown = stripe_service.call("POST", "/v1/invoices", token=api_key,
                                  body={"customer_id": "cus_nobody", "amount": 100, "currency": "usd", "description": "x"})
    assert (unknown.status, unknown.json()["error"]["code"]) == (400, "customer_not_found")


def test_stripe_unreachable_is_503_and_not_ready(launcher: Callable[..., RunningService], service_env: dict[str, str],
                                                 postgres: Postgres, api_key: str) -> None:
    with socket.socket() as closed:  # bound, never listening: connections to it are refused
        closed.bind(("127.0.0.1", 0))
        running = launcher({**service_env, "STRIPE_API_BASE": f"http://127.0.0.1:{closed.getsockname()[1]}"})
        key = new_key()
        reply = pay(running, api_key, key)
        ready = running.call("GET", "/readyz")
    assert (reply.status, reply.json()["error"]["code"]) == (503, "stripe_unavailable")
    assert reply.headers["retry-after"] == "5"
    assert not payment_rows(postgres, "idempotency_key", key)
    assert running.metric('payments_total{outcome="error"}') == 1
    assert ready.status == 503
    assert ready.json()["checks"] == {"postgres": "ok", "redis": "ok", "stripe": "error: APIConnectionError"}
    assert "Stripe unavailable after retries: APIConnectionError" in running.log()


@pytest.fixture
def faults(stripe_emulator: StripeEmulator) -> Iterator[Callable[[dict[str, Any]], None]]:
    """Inject emulator faults for one test; whatever is left is cleared afterwards."""
    yield lambda spec: stripe_emulator.admin("POST", "/_emulator/faults", spec)
    stripe_emulator.admin("DELETE", "/_emulator/faults")


def test_lost_response_is_retried_with_the_same_key(stripe_service: RunningService, stripe_emulator: StripeEmulator,
                                                    faults: Callable[[dict[str, Any]], None], api_key: str) -> None:
    # Stripe charges, then the connection drops before the answer: the SDK retries with the same idempotency key.
    faults({"kind": "drop", "path_prefix": "/v1/payment_intents", "method": "POST", "after_processing": True})
    reply = pay(stripe_service, api_key, new_key(), amount=1500)
    assert (reply.status, reply.json()["status"]) == (201, "succeeded"), reply.body
    intent_id = reply.json()["stripe_payment_intent_id"]
    assert [intent.id for intent in intents_of(stripe_emulator, reply.json()["id"])] == [intent_id]
    posts = stripe_emulator.requests("POST", "/v1/payment_intents")
    assert [entry["replayed"] for entry in posts[-2:]] == [False, True]


def test_stripe_errors_after_retries_are_503_and_a_later_retry_charges_once(
        stripe_service: RunningService, stripe_emulator: StripeEmulator, faults: Callable[[dict[str, Any]], None],
        postgres: Postgres, api_key: str) -> None:
    errors = stripe_service.metric('payments_total{outcome="error"}')
    faults({"kind": "status", "status": 500, "path_prefix": "/v1/payment_intents", "method": "POST", "count": 3})
    key = new_key()
    failed = pay(stripe_service, api_key, key)
    assert (failed.status, failed.json()["error"]["code"]) == (503, "stripe_unavailable")
    assert failed.headers["retry-after"] == "5"
    assert not payment_rows(postgres, "idempotency_key", key)
    assert stripe_service.metric('payments_total{outcome="error"}') == errors + 1
    retried = pay(stripe_service, api_key, key)
    assert retried.status == 201, retried.body
    assert len(intents_of(stripe_emulator, retried.json()["id"])) == 1


def test_readyz_checks_stripe_cached_and_reports_it_stopped(launcher: Callable[..., RunningService],
                                                            stripe_emulator_factory: Callable[[], StripeEmulator],
                                                            service_env: dict[str, str]) -> None:
    emulator = stripe_emulator_factory()
    running = launcher({**service_env, "STRIPE_API_BASE": emulator.url})
    calls = 20
    for _attempt in range(calls):
        ready = running.call("GET", "/readyz")
        assert (ready.status, ready.json()["checks"]["stripe"]) == (200, "ok")
    balance_calls = emulator.requests("GET", "/v1/balance")
    assert 1 <= len(balance_calls) < calls / 4, balance_calls  # cached: not one Stripe call per health check
    emulator.proc.terminate()
    emulator.proc.wait(30)
    replies: list[Reply] = []

    def stripe_reported_down() -> bool:
        replies.append(running.call("GET", "/readyz"))
        return replies[-1].status == 503

    eventually(stripe_reported_down, "readyz to report Stripe down")
    assert replies[-1].json() == {"status": "not-ready",
                                  "checks": {"postgres": "ok", "redis": "ok", "stripe": "error: APIConnectionError"}}
    assert running.log().count("readiness check stripe: error: APIConnectionError") == 1
