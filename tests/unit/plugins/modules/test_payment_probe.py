"""Unit tests of payment_probe against the fake Stripe API (and a fake payment service for service_check)."""

from __future__ import annotations

import http.server
import json
import threading
import typing as t

import pytest

from stripe_fake_api import FakeStripe
from stripe_module_runner import LIVE_KEY, TEST_KEY, run

from ansible_collections.payments.deploy.plugins.modules import payment_probe

SERVICE_TOKEN = "svc-token-0123456789abcdef"


@pytest.fixture
def fake() -> t.Iterator[FakeStripe]:
    server = FakeStripe(keys=[TEST_KEY, LIVE_KEY])
    yield server
    server.close()


class FakeService:
    """Answers ``GET /v1/payments/by-intent/<id>`` with 200 when the fake Stripe knows the PaymentIntent."""

    def __init__(self, stripe: FakeStripe, status: int | None = None) -> None:
        self.seen: list[tuple[str, str | None]] = []
        service = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: t.Any) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 (http.server naming)
                intent_id = self.path.rsplit("/", 1)[-1]
                service.seen.append((self.path, self.headers.get("Authorization")))
                code = status or (200 if intent_id in stripe.intents else 404)
                body = json.dumps({"payment_intent": intent_id} if code == 200 else {"error": "not found"}).encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1/payments/by-intent/{{id}}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def probe_args(fake: FakeStripe, **extra: t.Any) -> dict[str, t.Any]:
    return {"api_key": TEST_KEY, "api_base": fake.url, "max_network_retries": 2, "run_id": "deploy-42", **extra}


def test_bad_input_fails_before_any_request(fake: FakeStripe, capsys: pytest.CaptureFixture[str]) -> None:
    bad = probe_args(fake, api_key=LIVE_KEY, count=0, amount=10, currency="USD", run_id="a b", metadata={"probe_n": "1"},
                     service_check={"url": "http://x/no-placeholder"})
    result = run(payment_probe, capsys, bad)
    assert result["failed"] is True
    for part in ("run_id", "count", "amount", "currency", "probe_n", "test payment method", "{id}"):
        assert part in result["msg"]
    assert fake.requests == []


def test_probes_succeed_with_latencies_and_refunds(fake: FakeStripe, capsys: pytest.CaptureFixture[str]) -> None:
    result = run(payment_probe, capsys, probe_args(fake, count=3, amount=75, metadata={"deploy": "42"}))
    assert not result.get("failed") and result["changed"] is True
    assert result["charged_total"] == result["refunded_total"] == 225 and result["fresh_probes"] == 3
    assert len(fake.intents) == 3 and len(fake.refunds) == 3
    for n, probe in enumerate(result["probes"], start=1):
        assert probe["status"] == "succeeded" and probe["refund_status"] == "succeeded" and probe["charge_refunded"] is True
        assert probe["replayed"] == {"create": False, "refund": False}
        assert probe["idempotency_keys"] == {"create": f"deploy-42:{n}:create", "refund": f"deploy-42:{n}:refund"}
        assert set(probe["latency"]) == {"create", "retrieve", "list", "refund", "charge"}
        intent = fake.intents[probe["payment_intent"]]
        assert intent["metadata"] == {"deploy": "42", "probe_run_id": "deploy-42", "probe_n": str(n)}
    creates = [r for r in fake.requests if r["method"] == "POST" and r["path"] == "/v1/payment_intents"]
    assert [r["idempotency_key"] for r in creates] == ["deploy-42:1:create", "deploy-42:2:create", "deploy-42:3:create"]
    assert creates[0]["params"]["confirm"] == "true" and creates[0]["params"]["payment_method_types"] == ["card"]
    latency = result["latency"]
    creates_seen = sorted(p["latency"]["create"] for p in result["probes"])
    assert latency["count"] == 3 and latency["method"] == "nearest-rank"
    assert latency["p50"] == creates_seen[1] and latency["p95"] == latency["max"] == creates_seen[2]
    assert latency["steps"]["refund"]["count"] == 3


def test_rerun_with_same_run_id_charges_nothing(fake: FakeStripe, capsys: pytest.CaptureFixture[str]) -> None:
    first = run(payment_probe, capsys, probe_args(fake, count=2))
    second = run(payment_probe, capsys, probe_args(fake, count=2))
    assert len(fake.intents) == 2 and len(fake.refunds) == 2
    assert second["changed"] is False and second["fresh_probes"] == 0
    assert [p["payment_intent"] for p in second["probes"]] == [p["payment_intent"] for p in first["probes"]]
    assert all(p["replayed"] == {"create": True, "refund": True} for p in second["probes"])
    assert second["latency"]["count"] == 0 and second["latency"]["p95"] is None
    assert any("replayed" in w for w in second["warnings"])


def test_same_run_id_other_amount_is_refused(fake: FakeStripe, capsys: pytest.CaptureFixture[str]) -> None:
    run(payment_probe, capsys, probe_args(fake))
    result = run(payment_probe, capsys, probe_args(fake, amount=99))
    assert result["failed"] is True and "use a new run_id" in result["msg"]
    assert result["stripe_error"]["type"] == "idempotency_error" and len(fake.intents) == 1


def test_decline_fails_with_codes_and_request_id(fake: FakeStripe, capsys: pytest.CaptureFixture[str]) -> None:
    result = run(payment_probe, capsys, probe_args(fake, count=3, payment_method="pm_card_chargeDeclinedInsufficientFunds"))
    assert result["failed"] is True
    error = result["stripe_error"]
    assert (error["type"], error["code"], error["decline_code"], error["http_status"]) == ("card_error", "card_declined", "insufficient_funds", 402)
    assert "payment probe 1 of 3" in result["msg"] and "declined" in result["msg"]
    assert "insufficient_funds" in result["msg"] and error["request_id"] in result["msg"]
    assert len(result["probes"]) == 1 and result["probes"][0]["payment_intent"] in fake.intents
    assert result["charged_total"] == 0 and not fake.refunds


def test_retryable_errors_are_retried_by_the_sdk(fake: FakeStripe, capsys: pytest.CaptureFixture[str]) -> None:
    fake.add_fault("POST", "/v1/payment_intents", 429, count=1, should_retry=True)
    fake.add_fault("POST", "/v1/refunds", 500, count=1)
    result = run(payment_probe, capsys, probe_args(fake))
    assert not result.get("failed")
    calls = {c["path"]: c for c in result["api_calls"] if c["method"] == "POST"}
    assert calls["/v1/payment_intents"]["attempt_statuses"] == [429, 200]
    assert calls["/v1/refunds"]["attempt_statuses"] == [500, 200]
    assert len(fake.intents) == 1 and len(fake.refunds) == 1


def test_429_without_retry_advice_fails(fake: FakeStripe, capsys: pytest.CaptureFixture[str]) -> None:
    fake.add_fault("POST", "/v1/payment_intents", 429, count=1)
    result = run(payment_probe, capsys, probe_args(fake))
    assert result["failed"] is True and result["stripe_error"]["http_status"] == 429
    assert result["api_calls"][0]["attempts"] == 1 and fake.intents == {}


def test_check_mode_charges_nothing(fake: FakeStripe, capsys: pytest.CaptureFixture[str]) -> None:
    result = run(payment_probe, capsys, probe_args(fake, count=2), check=True)
    assert result["changed"] is True and result["livemode"] is False
    assert [p["status"] for p in result["probes"]] == ["planned", "planned"]
    assert fake.writes() == [] and [r["path"] for r in fake.requests] == ["/v1/balance"]


def test_p95_over_threshold_fails(fake: FakeStripe, capsys: pytest.CaptureFixture[str]) -> None:
    result = run(payment_probe, capsys, probe_args(fake, count=2, p95_threshold=0.000001))
    assert result["failed"] is True and "exceeds p95_threshold" in result["msg"]
    assert result["latency"]["p95"] > 0.000001 and result["refunded_total"] == 100


def test_service_check_finds_the_payment_and_hides_headers(fake: FakeStripe, capsys: pytest.CaptureFixture[str]) -> None:
    service = FakeService(fake)
    try:
        result = run(payment_probe, capsys, probe_args(fake, count=2, service_check={
            "url": service.url, "headers": {"Authorization": f"Bearer {SERVICE_TOKEN}"}}))
    finally:
        service.close()
    assert not result.get("failed")
    assert [p["service"] for p in result["probes"]] == [{"status": 200, "requests": 1}] * 2
    assert [auth for path, auth in service.seen] == [f"Bearer {SERVICE_TOKEN}"] * 2
    assert service.seen[0][0].endswith(result["probes"][0]["payment_intent"])
    assert SERVICE_TOKEN not in result["_raw"]


def test_service_that_does_not_know_the_payment_fails_after_refund(fake: FakeStripe, capsys: pytest.CaptureFixture[str]) -> None:
    service = FakeService(fake, status=404)
    try:
        result = run(payment_probe, capsys, probe_args(fake, service_check={"url": service.url, "retries": 2, "retry_delay": 0}))
    finally:
        service.close()
    assert result["failed"] is True and "the service does not know PaymentIntent" in result["msg"]
    assert "answered 404 after 3 request(s)" in result["msg"]
    assert result["probes"][0]["refund_status"] == "succeeded" and len(fake.refunds) == 1


def test_refund_that_stays_pending_fails(fake: FakeStripe, capsys: pytest.CaptureFixture[str]) -> None:
    fake.refund_status = "pending"
    result = run(payment_probe, capsys, probe_args(fake, refund_timeout=0))
    assert result["failed"] is True and "is 'pending', not 'succeeded'" in result["msg"]
    assert result["refunded_total"] == 0


def test_without_refund(fake: FakeStripe, capsys: pytest.CaptureFixture[str]) -> None:
    result = run(payment_probe, capsys, probe_args(fake, refund=False))
    assert not result.get("failed") and result["charged_total"] == 50 and result["refunded_total"] == 0
    assert fake.refunds == {}


@pytest.mark.parametrize("option, value", [("p95_threshold", "nan"), ("p95_threshold", "inf"), ("refund_timeout", "nan"),
                                           ("timeout", "nan"), ("p95_threshold", 0)])
def test_numbers_must_be_finite(fake: FakeStripe, capsys: pytest.CaptureFixture[str], option: str, value: t.Any) -> None:
    result = run(payment_probe, capsys, probe_args(fake, **{option: value}))
    assert result["failed"] is True and f"{option} must be" in result["msg"] and "finite" in result["msg"]
    assert fake.requests == []


def test_service_check_numbers_must_be_finite(fake: FakeStripe, capsys: pytest.CaptureFixture[str]) -> None:
    check = {"url": "http://127.0.0.1:9/{id}", "timeout": "nan", "retry_delay": "inf"}
    result = run(payment_probe, capsys, probe_args(fake, service_check=check))
    assert result["failed"] is True
    assert "service_check.timeout must be" in result["msg"] and "service_check.retry_delay must be" in result["msg"]
    assert fake.requests == []


def test_currency_with_a_trailing_newline_is_refused(fake: FakeStripe, capsys: pytest.CaptureFixture[str]) -> None:
    result = run(payment_probe, capsys, probe_args(fake, currency="usd\n"))
    assert result["failed"] is True and "currency" in result["msg"] and fake.requests == []
