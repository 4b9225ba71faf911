"""Unit tests of stripe_key_info against the fake Stripe API."""

from __future__ import annotations

import typing as t

import pytest

from stripe_fake_api import FakeStripe
from stripe_module_runner import LIVE_KEY, RESTRICTED_KEY, TEST_KEY, run

from ansible_collections.payments.deploy.plugins.module_utils import _stripe
from ansible_collections.payments.deploy.plugins.modules import stripe_key_info

ACCOUNT = "acct_1UnitTest0000001"


@pytest.fixture
def fake() -> t.Iterator[FakeStripe]:
    server = FakeStripe(keys=[TEST_KEY, LIVE_KEY, RESTRICTED_KEY], account=ACCOUNT)
    yield server
    server.close()


def key_info(fake: FakeStripe, capsys: pytest.CaptureFixture[str], key: str, **extra: t.Any) -> dict[str, t.Any]:
    result = run(stripe_key_info, capsys, {"api_key": key, "api_base": fake.url, "max_network_retries": 0, **extra}, check=True)
    assert key not in result["_raw"]
    return result


def test_live_secret_key_matches_production(fake: FakeStripe, capsys: pytest.CaptureFixture[str]) -> None:
    result = key_info(fake, capsys, LIVE_KEY, expect_mode="live", expect_kind="secret", expect_account=ACCOUNT)
    assert not result.get("failed") and result["changed"] is False
    assert (result["kind"], result["mode"], result["livemode"], result["account"]) == ("secret", "live", True, ACCOUNT)
    assert result["key_hint"] == "sk_live_\u2026l1ve" and result["key_valid"] is True
    assert [c["path"] for c in result["api_calls"]] == ["/v1/balance", "/v1/account"]


def test_test_key_where_live_is_expected_fails_with_the_hint(fake: FakeStripe, capsys: pytest.CaptureFixture[str]) -> None:
    result = key_info(fake, capsys, TEST_KEY, expect_mode="live", expected_by="production")
    assert result["failed"] is True
    assert result["msg"] == "production expects a live key: STRIPE_SECRET_KEY is a test key (sk_test_\u2026t3st)"
    assert result["mode"] == "test" and result["account"] == ACCOUNT


def test_restricted_key_without_account_permission_is_not_a_failure(fake: FakeStripe, capsys: pytest.CaptureFixture[str]) -> None:
    result = key_info(fake, capsys, RESTRICTED_KEY)
    assert not result.get("failed")
    assert result["kind"] == "restricted" and result["livemode"] is False and result["key_valid"] is True
    assert result["account"] is None and result["account_error"]["http_status"] == 403


def test_restricted_key_cannot_prove_the_account(fake: FakeStripe, capsys: pytest.CaptureFixture[str]) -> None:
    result = key_info(fake, capsys, RESTRICTED_KEY, expect_account=ACCOUNT, expect_kind="secret", key_name="APP_KEY")
    assert result["failed"] is True
    assert "expected a secret key: APP_KEY is a restricted key (rk_test_\u2026rstr)" in result["problems"]
    assert any("cannot be read" in p and "HTTP 403" in p for p in result["problems"])
    assert len(result["problems"]) == 2


def test_wrong_account(fake: FakeStripe, capsys: pytest.CaptureFixture[str]) -> None:
    result = key_info(fake, capsys, TEST_KEY, expect_account="acct_other")
    assert result["failed"] is True and f"belongs to {ACCOUNT}" in result["msg"]


def test_rejected_key(fake: FakeStripe, capsys: pytest.CaptureFixture[str]) -> None:
    unknown = "sk_live_" + "d" * 24
    result = key_info(fake, capsys, unknown)
    assert result["failed"] is True and result["key_valid"] is False
    assert "Stripe rejects STRIPE_SECRET_KEY (sk_live_\u2026dddd)" in result["msg"]
    assert result["balance_error"]["http_status"] == 401
    assert [c["path"] for c in result["api_calls"]] == ["/v1/balance"]


def test_prefix_and_api_disagree(fake: FakeStripe, capsys: pytest.CaptureFixture[str]) -> None:
    fake.balance_livemode = True
    result = key_info(fake, capsys, TEST_KEY)
    assert result["failed"] is True and "has a test prefix but Stripe answers livemode=true" in result["msg"]


def test_publishable_and_odd_keys(fake: FakeStripe, capsys: pytest.CaptureFixture[str]) -> None:
    publishable = key_info(fake, capsys, "pk_test_" + "e" * 24)
    assert publishable["kind"] == "publishable" and publishable["failed"] is True
    assert "publishable key" in publishable["msg"]
    odd = key_info(fake, capsys, "not-a-stripe-key-at-all", expect_mode="test")
    assert odd["kind"] == "unknown" and odd["mode"] is None
    assert "does not look like a Stripe key" in odd["msg"] and "is a key of unknown kind" in odd["msg"]


def test_connection_failure_is_reported(capsys: pytest.CaptureFixture[str]) -> None:
    result = run(stripe_key_info, capsys, {"api_key": TEST_KEY, "api_base": "http://127.0.0.1:9", "max_network_retries": 0, "timeout": 2})
    assert result["failed"] is True and result["key_valid"] is None
    assert "cannot check STRIPE_SECRET_KEY" in result["msg"] and result["balance_error"]["type"] == "api_connection_error"
    assert result["api_calls"][0]["attempt_statuses"] == ["connection_error"]


def test_missing_sdk_names_the_library(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_stripe, "HAS_STRIPE", False)
    monkeypatch.setattr(_stripe, "STRIPE_IMPORT_ERROR", "Traceback: No module named 'stripe'")
    result = run(stripe_key_info, capsys, {"api_key": TEST_KEY})
    assert result["failed"] is True and "Failed to import the required Python library (stripe)" in result["msg"]
    assert result["api_calls"] == []


@pytest.mark.parametrize("timeout", ["nan", "inf", "0", "-5"])
def test_a_timeout_that_is_not_a_finite_positive_number_fails_naming_the_option(
        capsys: pytest.CaptureFixture[str], timeout: str) -> None:
    result = run(stripe_key_info, capsys, {"api_key": TEST_KEY, "api_base": "http://127.0.0.1:9", "timeout": timeout})
    assert result["failed"] is True and "timeout must be more than 0 and at most 600 seconds" in result["msg"]
    assert result.get("api_calls", []) == []
