"""Injected faults, and how the SDK's retry rules (``stripe/_http_client.py`` ``_should_retry``) meet them."""

from __future__ import annotations

import pytest
import stripe

from conftest import Emulator

CUSTOMERS = "/v1/customers"


def attempts(emu: Emulator) -> list[dict]:
    return emu.seen("POST", CUSTOMERS)


def test_500_is_retried_with_the_same_idempotency_key(emu: Emulator) -> None:
    emu.add_fault(method="POST", path_prefix=CUSTOMERS, kind="status", status=500, count=2)
    customer = emu.client(retries=2).v1.customers.create({"email": "r@example.com"})
    seen = attempts(emu)
    assert [r["status"] for r in seen] == [500, 500, 200]
    assert len({r["idempotency_key"] for r in seen}) == 1 and seen[0]["idempotency_key"]
    assert [c.id for c in emu.client().v1.customers.list().data] == [customer.id]


def test_500_with_should_retry_false_is_not_retried(emu: Emulator) -> None:
    emu.add_fault(method="POST", path_prefix=CUSTOMERS, kind="status", status=500, should_retry=False)
    with pytest.raises(stripe.APIError) as caught:
        emu.client(retries=3).v1.customers.create({})
    assert caught.value.http_status == 500 and caught.value.error.type == "api_error"
    assert caught.value.headers.get("stripe-should-retry") == "false"
    assert len(attempts(emu)) == 1


def test_429_rate_limit_is_not_retried_by_the_sdk(emu: Emulator) -> None:
    """Stripe's SDKs leave real rate limits to the caller: no Stripe-Should-Retry header, no retry."""
    emu.add_fault(method="POST", path_prefix=CUSTOMERS, kind="status", status=429, count=5)
    with pytest.raises(stripe.RateLimitError) as caught:
        emu.client(retries=3).v1.customers.create({})
    assert caught.value.error.code == "rate_limit" and caught.value.error.type == "invalid_request_error"
    assert "stripe-should-retry" not in caught.value.headers
    assert len(attempts(emu)) == 1


def test_429_lock_timeout_with_should_retry_true_is_retried(emu: Emulator) -> None:
    emu.add_fault(method="POST", path_prefix=CUSTOMERS, kind="status", status=429, code="lock_timeout", should_retry=True, count=1)
    emu.client(retries=2).v1.customers.create({})
    assert [r["status"] for r in attempts(emu)] == [429, 200]


def test_lock_timeout_is_retried_by_default_unless_told_otherwise(emu: Emulator) -> None:
    emu.add_fault(method="POST", path_prefix=CUSTOMERS, kind="status", status=429, code="lock_timeout", count=1)
    emu.client(retries=1).v1.customers.create({})
    assert [r["status"] for r in attempts(emu)] == [429, 200]
    emu.admin("DELETE", "requests")
    emu.add_fault(method="POST", path_prefix=CUSTOMERS, kind="status", status=429, code="lock_timeout", should_retry=None, count=1)
    with pytest.raises(stripe.RateLimitError):
        emu.client(retries=1).v1.customers.create({})
    assert [r["status"] for r in attempts(emu)] == [429]


def test_409_is_retried(emu: Emulator) -> None:
    emu.add_fault(method="POST", path_prefix=CUSTOMERS, kind="status", status=409, count=1)
    emu.client(retries=1).v1.customers.create({})
    assert [r["status"] for r in attempts(emu)] == [409, 200]


def test_no_retry_without_max_network_retries(emu: Emulator) -> None:
    emu.add_fault(method="POST", path_prefix=CUSTOMERS, kind="status", status=503, count=1)
    with pytest.raises(stripe.APIError):
        emu.client(retries=0).v1.customers.create({})
    assert len(attempts(emu)) == 1
    assert emu.client().v1.customers.list().data == []


def test_dropped_connection_is_retried(emu: Emulator) -> None:
    emu.add_fault(method="POST", path_prefix=CUSTOMERS, kind="drop", count=1)
    with pytest.raises(stripe.APIConnectionError):
        emu.client(retries=0).v1.customers.create({})
    assert emu.client().v1.customers.list().data == []  # dropped before it ran
    emu.add_fault(method="POST", path_prefix=CUSTOMERS, kind="drop", count=1)
    emu.client(retries=1).v1.customers.create({})
    assert len(emu.client().v1.customers.list().data) == 1


def test_lost_response_is_replayed_not_repeated(emu: Emulator) -> None:
    """drop after_processing: the customer is made, the answer lost; the SDK's retry with the same key gets the replay."""
    emu.add_fault(method="POST", path_prefix=CUSTOMERS, kind="drop", after_processing=True, count=1)
    customer = emu.client(retries=1).v1.customers.create({"email": "lost@example.com"})
    seen = attempts(emu)
    assert [(r["fault"], r["replayed"]) for r in seen] == [("drop", False), (None, True)]
    assert [c.id for c in emu.client().v1.customers.list().data] == [customer.id]
    assert len(emu.client().v1.events.list({"type": "customer.created"}).data) == 1


def test_latency_fault_then_normal_answer(emu: Emulator) -> None:
    emu.add_fault(method="GET", path_prefix="/v1/balance", kind="latency", latency_ms=300, count=1)
    assert emu.client().v1.balance.retrieve().object == "balance"
    assert [r["fault"] for r in emu.seen("GET", "/v1/balance")] == ["latency"]


def test_count_method_and_prefix_select_requests(emu: Emulator) -> None:
    emu.add_fault(method="POST", path_prefix="/v1/payment_intents", kind="status", status=500, count=2)
    assert emu.request("GET", "/v1/payment_intents").status == 200  # other method
    assert emu.request("POST", CUSTOMERS).status == 200  # other path
    listed = emu.admin("GET", "faults").body["data"]
    assert len(listed) == 1 and listed[0]["count"] == 2
    first = emu.request("POST", "/v1/payment_intents", {"amount": 100, "currency": "usd"})
    assert first.status == 500 and first.error["type"] == "api_error" and first.headers["request-id"].startswith("req_")
    assert emu.request("POST", "/v1/payment_intents", {"amount": 100, "currency": "usd"}).status == 500
    assert emu.request("POST", "/v1/payment_intents", {"amount": 100, "currency": "usd"}).status == 200
    assert emu.admin("GET", "faults").body["data"] == []


@pytest.mark.parametrize(("status", "extra", "err_type", "code"), [
    (429, {}, "invalid_request_error", "rate_limit"),
    (429, {"code": "lock_timeout"}, "invalid_request_error", "lock_timeout"),
    (409, {}, "invalid_request_error", "idempotency_key_in_use"),
    (500, {}, "api_error", None),
    (400, {"type": "invalid_request_error", "code": "parameter_invalid_empty", "message": "custom"}, "invalid_request_error",
     "parameter_invalid_empty"),
])
def test_fault_bodies_have_stripes_shape(emu: Emulator, status: int, extra: dict, err_type: str, code: str | None) -> None:
    emu.add_fault(kind="status", status=status, **extra)
    reply = emu.request("GET", "/v1/balance")
    assert reply.status == status and reply.error["type"] == err_type and reply.error.get("code") == code
    assert reply.error["message"]
    if code == "lock_timeout":
        assert reply.error["message"].startswith("This object cannot be accessed right now")
        assert reply.headers["stripe-should-retry"] == "true"  # Stripe's hint for lock timeouts
    else:
        assert "stripe-should-retry" not in reply.headers
    if "message" in extra:
        assert reply.error["message"] == "custom"


def test_clear_faults(emu: Emulator) -> None:
    emu.add_fault(kind="status", status=500, count=10)
    assert emu.admin("DELETE", "faults").body["deleted"] == 1
    assert emu.request("GET", "/v1/balance").status == 200


@pytest.mark.parametrize("spec", [
    {"kind": "explode"},
    {"kind": "status"},
    {"kind": "status", "status": 200},
    {"kind": "latency"},
    {"kind": "status", "status": 500, "count": 0},
    {"kind": "status", "status": 500, "should_retry": "yes"},
    {"kind": "status", "status": 500, "path_prefix": "/_emulator/health"},
    {"kind": "drop", "colour": "blue"},
    ["not", "an", "object"],
])
def test_bad_fault_specs_are_refused(emu: Emulator, spec: object) -> None:
    reply = emu.admin("POST", "faults", spec)
    assert reply.status == 400 and reply.error["message"].startswith("Invalid fault:")
    assert emu.admin("GET", "faults").body["data"] == []
