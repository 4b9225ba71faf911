"""stripe_webhook_endpoint's return_secret: the signing secret handed to a no_log task only, no file written."""

from __future__ import annotations

import typing as t
from pathlib import Path

import pytest

from stripe_fake_api import FakeStripe
from stripe_module_runner import TEST_KEY, run

from ansible_collections.payments.deploy.plugins.modules import stripe_webhook_endpoint

URL = "https://pay.example.com/webhooks/stripe"
EVENTS = ["payment_intent.succeeded", "charge.refunded"]


@pytest.fixture
def fake() -> t.Iterator[FakeStripe]:
    server = FakeStripe(keys=[TEST_KEY])
    yield server
    server.close()


def endpoint_args(fake: FakeStripe, **extra: t.Any) -> dict[str, t.Any]:
    return {"api_key": TEST_KEY, "api_base": fake.url, "max_network_retries": 0, "url": URL, "enabled_events": EVENTS,
            "marker": "prod", **extra}


def secret_of(endpoint_id: str) -> str:
    return f"whsec_{endpoint_id}Secret0123456789"


def files_under(path: Path) -> list[Path]:
    return sorted(p for p in path.rglob("*") if p.is_file())


def test_without_no_log_it_is_refused_before_any_request(fake: FakeStripe, capsys: pytest.CaptureFixture[str]) -> None:
    result = run(stripe_webhook_endpoint, capsys, endpoint_args(fake, return_secret=True))
    assert result["failed"] is True
    assert "return_secret=true" in result["msg"] and "no_log: true" in result["msg"]
    assert fake.requests == [] and result["api_calls"] == []


def test_created_endpoint_secret_is_returned_unmasked_and_no_file_written(
        fake: FakeStripe, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    created = run(stripe_webhook_endpoint, capsys, endpoint_args(fake, return_secret=True, _ansible_no_log=True))
    assert created["changed"] is True and created["operation"] == "created"
    assert created["secret_issued"] is True and created["secret_file_written"] is False
    assert created["secret"] == secret_of(created["endpoint"]["id"])
    assert "secret" not in created["endpoint"]
    assert files_under(tmp_path) == []

    again = run(stripe_webhook_endpoint, capsys, endpoint_args(fake, return_secret=True, _ansible_no_log=True))
    assert again["changed"] is False and again["secret_issued"] is False and "secret" not in again


def test_check_mode_returns_no_secret(fake: FakeStripe, capsys: pytest.CaptureFixture[str]) -> None:
    predicted = run(stripe_webhook_endpoint, capsys, endpoint_args(fake, return_secret=True, _ansible_no_log=True), check=True)
    assert predicted["changed"] is True and predicted["secret_issued"] is False and "secret" not in predicted
    assert fake.endpoints == {}


def test_recreated_endpoint_returns_the_new_secret(fake: FakeStripe, capsys: pytest.CaptureFixture[str]) -> None:
    old = fake.add_endpoint(url=URL, enabled_events=EVENTS, api_version="2024-06-20",
                            metadata={"payments_deploy_id": "prod", "payments_deploy_connect": "false"})
    result = run(stripe_webhook_endpoint, capsys, endpoint_args(
        fake, api_version="2025-01-27.acacia", recreate=True, return_secret=True, _ansible_no_log=True))
    assert result["operation"] == "recreated" and result["endpoint"]["id"] != old["id"]
    assert result["secret"] == secret_of(result["endpoint"]["id"])


def test_without_return_secret_the_secret_stays_masked(fake: FakeStripe, capsys: pytest.CaptureFixture[str]) -> None:
    created = run(stripe_webhook_endpoint, capsys, endpoint_args(fake, _ansible_no_log=True))
    assert created["secret_issued"] is True
    assert secret_of(created["endpoint"]["id"]) not in created["_raw"]
