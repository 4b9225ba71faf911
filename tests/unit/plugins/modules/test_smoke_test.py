"""Unit tests of smoke_test against a fake payment service on 127.0.0.1 (and the unit tests' fake Stripe): a correct
service passes every check, each fault is caught by its own check, and the payments are always refunded."""

from __future__ import annotations

import typing as t

import pytest

from smoke_fake_service import FakePaymentService
from smoke_world import SECRETS, TARGETS, World, make_world, smoke_args
from stripe_module_runner import TEST_KEY, run

from ansible_collections.payments.deploy.plugins.modules import smoke_test

CHECKS = ("contract", "authentication", "admin_role", "rate_limit", "cors", "security_headers", "payment",
          "idempotency", "stripe_record", "service_record", "webhooks", "refund", "invoice", "email")


@pytest.fixture
def world(request: pytest.FixtureRequest) -> t.Iterator[World]:
    faults = getattr(request, "param", ())
    made = make_world(*faults, payment_delay=1.0)
    yield made
    made.close()


def smoke(world: World, capsys: pytest.CaptureFixture[str], check: bool = False, **extra: t.Any) -> dict[str, t.Any]:
    result = run(smoke_test, capsys, smoke_args(world, **extra), check=check)
    for secret in SECRETS:
        assert secret not in result["_raw"]
    # nothing had to be masked by Ansible either: the module never put a secret in its output
    assert "********" not in result["_raw"]
    return result


def records(result: dict[str, t.Any], name: str) -> list[dict[str, t.Any]]:
    return [c for c in result["checks"] if c["name"] == name]


def assert_all_refunded(world: World, result: dict[str, t.Any]) -> None:
    """Every payment the service holds got a refund request, and every succeeded refund reads so at Stripe."""
    assert sorted(set(world.service.refund_requests)) == sorted(world.service.payments)
    for refund in world.stripe.refunds.values():
        assert world.stripe.charges[refund["charge"]]["refunded"] is True
    assert {p["payment_id"] for p in result["payments"]} == set(world.service.payments)


def test_a_correct_service_passes_every_check(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    result = smoke(world, capsys)
    assert not result.get("failed"), result["msg"]
    assert result["changed"] is True and result["failed_checks"] == []
    assert [(c["name"], c["target"]) for c in result["checks"]] == (
        [(name, target) for name in CHECKS for target in TARGETS] + [("latency", "all targets")])
    assert all(c["passed"] is True and "skipped" not in c for c in result["checks"]), result["checks"]

    payments = result["payments"]
    assert [(p["n"], p["target"], p["idempotency_key"]) for p in payments] == [
        (1, "app1-green", "smoke-unit-1-1"), (2, "app2-green", "smoke-unit-1-2"),
        (3, "app1-green", "smoke-unit-1-3"), (4, "app2-green", "smoke-unit-1-4")]
    assert len(world.service.payments) == 4 and len(world.stripe.intents) == 4
    for payment in payments:
        intent = world.stripe.intents[payment["payment_intent"]]
        assert intent["metadata"]["payment_id"] == payment["payment_id"] and intent["amount"] == 50
        assert payment["refunded"] is True and payment["refund_id"].startswith("ref_")
        assert world.service.payments[payment["payment_id"]]["status"] == "refunded"
        assert "payment_intent.succeeded" in payment["webhook_events"]
    assert_all_refunded(world, result)
    assert len(world.stripe.refunds) == 4

    assert [i["target"] for i in result["invoices"]] == list(TARGETS)
    assert {i["invoice_id"] for i in result["invoices"]} == set(world.stripe.invoices)
    assert len(world.service.customers) == 1 and result["customer_id"] in world.service.customers
    assert len(world.service.mailbox) == 4

    latency = result["latency"]
    assert latency["count"] == 4 and latency["p50"] <= latency["p95"] == latency["max"]
    assert [t["version"] for t in result["targets"]] == ["1.2.3", "1.2.3"]
    # the smoke key was answered 429 (after the fake's limit of 5) and never retried
    assert "429 after 6 request(s)" in records(result, "rate_limit")[0]["detail"]


FAULT_CHECKS = {
    "auth_disabled": "authentication",
    "admin_open": "admin_role",
    "no_rate_limit": "rate_limit",
    "cors_any_origin": "cors",
    "no_nosniff": "security_headers",
    "no_webhook": "webhooks",
    "refund_fails": "refund",
    "no_email": "email",
    "no_idempotency": "idempotency",
}


@pytest.mark.parametrize("world", [(fault,) for fault in FAULT_CHECKS], indirect=True, ids=list(FAULT_CHECKS))
def test_each_fault_fails_exactly_its_check(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    [fault] = world.service.faults
    check = FAULT_CHECKS[fault]
    result = smoke(world, capsys)
    assert result["failed"] is True
    assert result["failed_checks"] == [check], result["msg"]
    for target in TARGETS:
        assert f"{check} on {target}: " in result["msg"]
    assert all(c["passed"] is False for c in records(result, check))
    assert_all_refunded(world, result)


def test_payment_missing_at_stripe_fails_stripe_record(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    world.stripe.add_fault("GET", "/v1/payment_intents/", 404, count=1000)
    result = smoke(world, capsys)
    assert result["failed_checks"] == ["stripe_record"], result["msg"]
    assert "not found at Stripe" in result["msg"] and "stripe_record on app2-green" in result["msg"]
    assert_all_refunded(world, result)


def test_failed_refunds_are_named_in_the_message(capsys: pytest.CaptureFixture[str]) -> None:
    world = make_world("refund_fails")
    try:
        result = smoke(world, capsys, payment_count=2)
    finally:
        world.close()
    assert "NOT refunded: " + ", ".join(p["payment_id"] for p in result["payments"]) in result["msg"]
    assert all(p["refunded"] is False for p in result["payments"])


@pytest.mark.parametrize("world", [("slow_payment",), ("payment_processing",)], indirect=True,
                         ids=["lost-answer", "not-succeeded"])
def test_payments_are_refunded_even_when_the_payment_check_fails(world: World,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    result = smoke(world, capsys, payment_count=2, request_timeout=0.4)
    assert result["failed"] is True and "payment" in result["failed_checks"]
    assert "payment on app1-green: payment 1: " in result["msg"]
    assert len(world.service.payments) == 2
    assert_all_refunded(world, result)
    assert all(p["refund_id"] for p in result["payments"])
    if "slow_payment" in world.service.faults:
        # the answers were lost: the idempotent replay found the payments, nothing was charged twice
        assert "timed out" in result["msg"] and len(world.stripe.intents) == 2
        assert result["failed_checks"] == ["payment"] and result["latency"]["count"] == 0


@pytest.mark.parametrize("world", [("payments_hang",)], indirect=True)
def test_payments_whose_fate_is_unknown_are_named(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    result = smoke(world, capsys, payment_count=2, request_timeout=0.3, checks=["payment", "idempotency"])
    assert result["failed_checks"] == ["payment", "idempotency"]
    assert "Not known whether these were made (no answer): smoke-unit-1-1, smoke-unit-1-2" in result["msg"]


def test_a_duplicate_made_by_the_replay_is_refunded_too(capsys: pytest.CaptureFixture[str]) -> None:
    world = make_world("no_idempotency")
    try:
        result = smoke(world, capsys, payment_count=2)
    finally:
        world.close()
    assert "the same Idempotency-Key made a second payment" in result["msg"]
    assert [p.get("duplicate_of") for p in result["payments"]] == [None, 1, None, 2]
    assert len(world.service.payments) == 4
    assert_all_refunded(world, result)
    assert all(p["refunded"] for p in result["payments"])


def test_p95_at_or_over_the_threshold_fails(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    result = smoke(world, capsys, p95_threshold=0.000001)
    assert result["failed_checks"] == ["latency"]
    assert "latency on all targets: p95 " in result["msg"] and "All 4 payment(s) made were refunded" in result["msg"]
    assert_all_refunded(world, result)


def test_check_mode_creates_nothing(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    result = smoke(world, capsys, check=True)
    assert not result.get("failed"), result["msg"]
    assert result["changed"] is False and result["payments"] == [] and result["invoices"] == []
    assert [p["idempotency_key"] for p in result["plan"]["payments"]] == [f"smoke-unit-1-{n}" for n in range(1, 5)]
    assert [i["target"] for i in result["plan"]["invoices"]] == list(TARGETS)
    for name in ("payment", "refund", "invoice", "email"):
        assert all(c["skipped"].startswith("check mode") for c in records(result, name))
    for name in ("contract", "authentication", "admin_role", "rate_limit", "cors", "security_headers"):
        assert all(c["passed"] for c in records(result, name))
    # the only POST is the unauthenticated one the authentication check must see refused
    assert [(r["method"], r["path"], r["role"]) for r in world.service.requests if r["method"] == "POST"] == [
        ("POST", "/v1/payments", None)] * 2
    assert world.service.customers == {} and world.service.payments == {} and world.stripe.requests == []


def test_a_subset_of_checks(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    result = smoke(world, capsys, checks=["contract", "cors"])
    assert not result.get("failed") and result["changed"] is False
    assert {c["name"] for c in result["checks"] if "passed" in c} == {"contract", "cors"}
    assert {c["skipped"] for c in result["checks"] if "skipped" in c} == {"not selected (checks)"}
    assert world.service.paths("POST") == [] and world.stripe.requests == []


def test_without_mailbox_the_email_check_is_skipped_with_the_reason(world: World,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    args = smoke_args(world)
    del args["mailbox_url"]
    del args["cors_allowed_origin"]
    result = run(smoke_test, capsys, args)
    assert not result.get("failed"), result["msg"]
    assert {c["skipped"] for c in records(result, "email")} == {"no mailbox_url: the receipts cannot be read"}
    assert all("allowed origin was not checked" in c["detail"] for c in records(result, "cors"))


def test_wrong_version_fails_the_contract(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    result = smoke(world, capsys, expected_version="9.9.9", checks=["contract"])
    assert result["failed_checks"] == ["contract"]
    assert "contract on app1-green: GET /version answered version '1.2.3', not the expected '9.9.9'" in result["msg"]


def test_an_unreachable_target_fails_its_checks_and_nothing_stops(world: World,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    closed = FakePaymentService(world.stripe, TEST_KEY, {}, listeners=1)
    url = closed.urls[0]
    closed.close()
    targets = [{"name": "app1-green", "url": world.service.urls[0]}, {"name": "gone", "url": url}]
    result = smoke(world, capsys, targets=targets, checks=["contract", "authentication", "security_headers"])
    assert result["failed_checks"] == ["contract", "authentication", "security_headers"]
    refused = f"contract on gone: GET {url}/healthz got no answer after 3 attempts: ConnectionRefusedError"
    assert refused in result["msg"]
    # once the target did not answer even after retries, its next requests are not retried
    assert f"GET {url}/version got no answer: ConnectionRefusedError" in result["msg"]
    assert all(c["passed"] for c in result["checks"] if c["target"] == "app1-green" and "passed" in c)
