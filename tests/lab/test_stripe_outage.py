"""A Stripe outage: payment endpoints answer 503 with Retry-After at once, everything else serves, and payments
work again once Stripe is back."""

from __future__ import annotations

import secrets
import time
from typing import TYPE_CHECKING, Any, Callable

import psycopg
import pytest

if TYPE_CHECKING:
    from conftest import Postgres, Reply, RunningService, StripeEmulator

pytestmark = pytest.mark.timeout(180)

RETRIED = "Stripe unavailable after retries"


def eventually(check: Callable[[], bool], what: str, timeout: float = 30) -> None:
    """Poll check until it holds; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.2)


def pay(running: RunningService, api_key: str, key: str, **body: Any) -> Reply:
    return running.call("POST", "/v1/payments", token=api_key, headers={"Idempotency-Key": key},
                        body={"amount": 1200, "currency": "eur", "payment_method": "pm_card_visa", **body})


def assert_stripe_unavailable(reply: Reply) -> None:
    assert reply.status == 503, reply.body
    assert reply.headers["retry-after"] == "5"
    error = reply.json()["error"]
    assert (error["type"], error["code"]) == ("api_error", "stripe_unavailable")
    assert error["message"]


def test_payments_answer_503_while_stripe_is_down_then_recover(
        launcher: Callable[..., RunningService], stripe_emulator_factory: Callable[..., StripeEmulator],
        service_env: dict[str, str], postgres: Postgres, api_key: str) -> None:
    emulator = stripe_emulator_factory()
    running = launcher({**service_env, "STRIPE_API_BASE": emulator.url})
    customer = running.call("POST", "/v1/customers", token=api_key, body={"email": "o@example.com", "name": "O"}).json()
    charged = pay(running, api_key, "before-" + secrets.token_hex(6), customer_id=customer["id"]).json()
    emulator.proc.terminate()
    emulator.proc.wait(30)

    key = "during-" + secrets.token_hex(6)
    assert_stripe_unavailable(pay(running, api_key, key))  # the SDK's retries, then 503
    assert running.log().count(RETRIED) == 1
    # Stripe is now known to be unreachable: each endpoint that needs it fails at once, without a new attempt.
    for request in (lambda: pay(running, api_key, key),
                    lambda: running.call("POST", f"/v1/payments/{charged['id']}/refunds", token=api_key, body={},
                                         headers={"Idempotency-Key": "refund-" + secrets.token_hex(6)}),
                    lambda: running.call("POST", "/v1/invoices", token=api_key, body={
                        "customer_id": customer["id"], "amount": 900, "currency": "eur", "description": "x"})):
        assert running.call("GET", "/readyz").json()["checks"]["stripe"] == "error: APIConnectionError"
        assert_stripe_unavailable(request())
    assert running.log().count(RETRIED) == 1
    assert running.metric('payments_total{outcome="error"}') == 2
    # What does not need Stripe keeps serving.
    assert running.call("GET", f"/v1/payments/{charged['id']}", token=api_key).status == 200
    assert running.call("GET", f"/v1/customers/{customer['id']}", token=api_key).status == 200
    assert running.call("GET", "/healthz/lb").status == 200
    with psycopg.connect(postgres.admin_dsn()) as conn:
        assert conn.execute("SELECT count(*) FROM payments WHERE idempotency_key = %s", (key,)).fetchone() == (0,)

    stripe_emulator_factory(emulator.port)  # Stripe is back, at the same address
    replies: list[Reply] = []
    eventually(lambda: replies.append(pay(running, api_key, key)) or replies[-1].status != 503,
               "a payment to go through once Stripe is back")
    assert replies[-1].status == 201, replies[-1].body
    assert {reply.status for reply in replies[:-1]} <= {503}
    eventually(lambda: running.call("GET", "/readyz").status == 200, "readyz to see Stripe back")


def test_a_slow_stripe_check_is_not_ready_but_does_not_refuse_payments(
        launcher: Callable[..., RunningService], stripe_emulator_factory: Callable[..., StripeEmulator],
        service_env: dict[str, str], api_key: str) -> None:
    emulator = stripe_emulator_factory()
    running = launcher({**service_env, "STRIPE_API_BASE": emulator.url})
    # The readiness check's GET /v1/balance answers after its 2 s timeout: Stripe is slow, not unreachable.
    emulator.admin("POST", "/_emulator/faults", {"kind": "latency", "latency_ms": 3000, "method": "GET",
                                                 "path_prefix": "/v1/balance", "count": 1})
    time.sleep(5.2)  # let the check's cached result expire, so that the next /readyz asks Stripe
    ready = running.call("GET", "/readyz")
    assert ready.status == 503 and ready.json()["checks"]["stripe"] == "error: Timeout", ready.body
    assert running.metric('dependency_up{dependency="stripe"}') == 0
    # A payment right after still goes to Stripe (its own timeout and retries) and succeeds.
    paid = pay(running, api_key, "slow-check-" + secrets.token_hex(6))
    assert paid.status == 201, paid.body
    assert emulator.requests("POST", "/v1/payment_intents")
