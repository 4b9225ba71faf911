"""Unit tests of stripe_webhook_endpoint and stripe_webhook_endpoint_info against the fake Stripe API."""

from __future__ import annotations

import os
import stat
import typing as t
from pathlib import Path

import pytest

from stripe_fake_api import FakeStripe
from stripe_module_runner import TEST_KEY, run

from ansible_collections.payments.deploy.plugins.modules import stripe_webhook_endpoint, stripe_webhook_endpoint_info

URL = "https://pay.example.com/webhooks/stripe"
EVENTS = ["payment_intent.succeeded", "charge.refunded"]


@pytest.fixture
def fake() -> t.Iterator[FakeStripe]:
    server = FakeStripe(keys=[TEST_KEY])
    yield server
    server.close()


def args(fake: FakeStripe, **extra: t.Any) -> dict[str, t.Any]:
    return {"api_key": TEST_KEY, "api_base": fake.url, "max_network_retries": 0, **extra}


def endpoint_args(fake: FakeStripe, **extra: t.Any) -> dict[str, t.Any]:
    return args(fake, url=URL, enabled_events=EVENTS, marker="prod", **extra)


def secret_of(fake: FakeStripe, endpoint_id: str) -> str:
    return f"whsec_{endpoint_id}Secret0123456789"


def test_bad_input_fails_before_any_request(fake: FakeStripe, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    result = run(stripe_webhook_endpoint, capsys, args(
        fake, enabled_events=[], metadata={"payments_deploy_id": "x", "a[b]": "c"}, secret_file=str(tmp_path / "missing" / "secret")))
    assert result["failed"] is True
    for part in ("url is required", "enabled_events must not be empty", "reserved", "square brackets", "does not exist"):
        assert part in result["msg"]
    assert fake.requests == []
    assert result["api_calls"] == []


def test_missing_key_names_the_environment_variable(fake: FakeStripe, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STRIPE_SECRET_KEY", raising=False)
    result = run(stripe_webhook_endpoint, capsys, {"api_base": fake.url, "url": URL, "enabled_events": EVENTS})
    assert result["failed"] is True
    assert "STRIPE_SECRET_KEY" in result["msg"]
    assert fake.requests == []


def test_key_from_environment_is_used_and_masked(fake: FakeStripe, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRIPE_SECRET_KEY", TEST_KEY)
    result = run(stripe_webhook_endpoint_info, capsys, {"api_base": fake.url})
    assert not result.get("failed")
    assert result["endpoints"] == []
    assert len(fake.requests) == 1
    assert TEST_KEY not in result["_raw"]


def test_create_check_mode_then_apply_then_idempotent(fake: FakeStripe, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    secret_file = tmp_path / "webhook-secret"
    wanted = endpoint_args(fake, description="production", metadata={"team": "payments"}, secret_file=str(secret_file))

    check = run(stripe_webhook_endpoint, capsys, wanted, check=True, diff=True)
    assert check["changed"] is True and check["operation"] == "created"
    assert check["endpoint"]["id"] is None
    assert check["diff"]["before"] == {} and check["diff"]["after"]["url"] == URL
    assert fake.writes() == [] and fake.endpoints == {}
    assert not secret_file.exists()

    created = run(stripe_webhook_endpoint, capsys, wanted, diff=True)
    assert created["changed"] is True and created["operation"] == "created"
    [endpoint_id] = fake.endpoints
    assert created["endpoint"]["id"] == endpoint_id
    assert created["endpoint"]["metadata"] == {"team": "payments", "payments_deploy_id": "prod", "payments_deploy_connect": "false"}
    assert created["endpoint"]["connect"] is False and created["endpoint"]["marker"] == "prod"
    assert created["secret_issued"] is True and created["secret_file_written"] is True
    assert secret_file.read_text() == secret_of(fake, endpoint_id)
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert secret_of(fake, endpoint_id) not in created["_raw"]
    assert created["secret"] != secret_of(fake, endpoint_id)
    assert "secret" not in created["endpoint"] and "secret" not in str(created["diff"])
    assert [c["method"] for c in created["api_calls"]] == ["GET", "POST"]
    assert created["api_calls"][1]["object_id"] == endpoint_id and created["api_calls"][1]["request_id"].startswith("req_")

    again = run(stripe_webhook_endpoint, capsys, wanted, diff=True)
    assert again["changed"] is False and again["operation"] == "none"
    assert again["found_by"] == "marker" and again["changed_fields"] == []
    assert "diff" not in again
    assert fake.writes() == ["POST /v1/webhook_endpoints"]


def test_update_in_place_sends_removed_metadata_keys_empty(fake: FakeStripe, capsys: pytest.CaptureFixture[str]) -> None:
    existing = fake.add_endpoint(url=URL, enabled_events=list(reversed(EVENTS)),
                                 metadata={"payments_deploy_id": "prod", "old": "1", "team": "payments"})
    wanted = dict(endpoint_args(fake, metadata={"team": "payments", "tier": "1"}), enabled_events=EVENTS + ["charge.dispute.created"])

    check = run(stripe_webhook_endpoint, capsys, wanted, check=True, diff=True)
    assert check["changed"] is True and check["operation"] == "updated"
    assert check["changed_fields"] == ["enabled_events", "metadata"]
    assert check["diff"]["before"]["metadata"] == {"old": "1", "payments_deploy_id": "prod", "team": "payments"}
    assert check["diff"]["after"]["metadata"] == {"payments_deploy_id": "prod", "team": "payments", "tier": "1"}
    assert fake.writes() == []

    result = run(stripe_webhook_endpoint, capsys, wanted)
    assert result["operation"] == "updated" and result["endpoint"]["id"] == existing["id"]
    update = fake.requests[-1]
    assert update["method"] == "POST" and update["path"] == f"/v1/webhook_endpoints/{existing['id']}"
    assert update["params"]["metadata"] == {"old": "", "tier": "1"}
    assert set(update["params"]) == {"enabled_events", "metadata"}
    assert fake.endpoints[existing["id"]]["metadata"] == {"payments_deploy_id": "prod", "team": "payments", "tier": "1"}
    assert run(stripe_webhook_endpoint, capsys, wanted)["changed"] is False


def test_event_order_and_unset_options_are_not_changes(fake: FakeStripe, capsys: pytest.CaptureFixture[str]) -> None:
    fake.add_endpoint(url=URL, enabled_events=list(reversed(EVENTS)), description="kept", metadata={"x": "1"}, status="disabled")
    result = run(stripe_webhook_endpoint, capsys, args(fake, url=URL, enabled_events=EVENTS))
    assert result["changed"] is False and result["found_by"] == "url"
    assert result["endpoint"]["description"] == "kept" and result["endpoint"]["disabled"] is True


def test_disable_and_clear_description(fake: FakeStripe, capsys: pytest.CaptureFixture[str]) -> None:
    existing = fake.add_endpoint(url=URL, description="old text")
    result = run(stripe_webhook_endpoint, capsys, args(fake, url=URL, disabled=True, description=""))
    assert result["changed_fields"] == ["description", "disabled"]
    assert fake.requests[-1]["params"] == {"description": "", "disabled": "true"}
    assert fake.endpoints[existing["id"]]["status"] == "disabled"


def test_create_disabled_creates_then_disables(fake: FakeStripe, capsys: pytest.CaptureFixture[str]) -> None:
    result = run(stripe_webhook_endpoint, capsys, endpoint_args(fake, disabled=True))
    assert result["endpoint"]["disabled"] is True
    assert [(c["method"], c["path"].split("/")[-1][:3]) for c in result["api_calls"]] == [
        ("GET", "web"), ("POST", "web"), ("POST", "we_")]


def test_marker_moves_the_url(fake: FakeStripe, capsys: pytest.CaptureFixture[str]) -> None:
    existing = fake.add_endpoint(url="https://old.example.com/hook", metadata={"payments_deploy_id": "prod"})
    result = run(stripe_webhook_endpoint, capsys, endpoint_args(fake))
    assert result["operation"] == "updated" and result["found_by"] == "marker"
    assert fake.endpoints[existing["id"]]["url"] == URL and len(fake.endpoints) == 1


def test_url_match_with_another_marker_is_not_adopted(fake: FakeStripe, capsys: pytest.CaptureFixture[str]) -> None:
    other = fake.add_endpoint(url=URL, metadata={"payments_deploy_id": "staging"})
    result = run(stripe_webhook_endpoint, capsys, endpoint_args(fake))
    assert result["operation"] == "created" and result["endpoint"]["id"] != other["id"]
    assert fake.endpoints[other["id"]]["metadata"] == {"payments_deploy_id": "staging"}


def test_two_candidates_fail_listing_ids(fake: FakeStripe, capsys: pytest.CaptureFixture[str]) -> None:
    first, second = fake.add_endpoint(url=URL), fake.add_endpoint(url=URL)
    result = run(stripe_webhook_endpoint, capsys, args(fake, url=URL, enabled_events=EVENTS))
    assert result["failed"] is True
    assert first["id"] in result["msg"] and second["id"] in result["msg"] and "refusing to pick" in result["msg"]
    assert fake.writes() == []


def test_immutable_change_fails_then_recreate_replaces(fake: FakeStripe, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    old = fake.add_endpoint(url=URL, enabled_events=EVENTS, api_version="2020-08-27",
                            metadata={"payments_deploy_id": "prod", "payments_deploy_connect": "false", "team": "a"})
    secret_file = tmp_path / "secret"
    wanted = endpoint_args(fake, api_version="2024-06-20", secret_file=str(secret_file))

    refused = run(stripe_webhook_endpoint, capsys, wanted)
    assert refused["failed"] is True
    assert "api_version is '2020-08-27', wanted '2024-06-20'" in refused["msg"] and "recreate=true" in refused["msg"]
    assert fake.writes() == [] and list(fake.endpoints) == [old["id"]]

    check = run(stripe_webhook_endpoint, capsys, dict(wanted, recreate=True), check=True)
    assert check["operation"] == "recreated" and check["changed_fields"] == ["api_version"]
    assert fake.writes() == []

    result = run(stripe_webhook_endpoint, capsys, dict(wanted, recreate=True))
    assert result["operation"] == "recreated"
    [new_id] = fake.endpoints
    assert new_id != old["id"]
    assert fake.writes() == ["POST /v1/webhook_endpoints", f"DELETE /v1/webhook_endpoints/{old['id']}"]
    create = [r for r in fake.requests if r["method"] == "POST"][0]["params"]
    assert create["api_version"] == "2024-06-20"
    assert create["metadata"] == {"payments_deploy_connect": "false", "payments_deploy_id": "prod", "team": "a"}
    assert secret_file.read_text() == secret_of(fake, new_id)
    assert run(stripe_webhook_endpoint, capsys, wanted)["changed"] is False


def test_connect_change_is_detected_from_metadata(fake: FakeStripe, capsys: pytest.CaptureFixture[str]) -> None:
    fake.add_endpoint(url=URL, enabled_events=EVENTS, metadata={"payments_deploy_id": "prod", "payments_deploy_connect": "false"})
    result = run(stripe_webhook_endpoint, capsys, endpoint_args(fake, connect=True))
    assert result["failed"] is True and "connect is False, wanted True" in result["msg"]
    assert fake.writes() == []


def test_connect_unknown_warns(fake: FakeStripe, capsys: pytest.CaptureFixture[str]) -> None:
    fake.add_endpoint(url=URL, enabled_events=EVENTS)
    result = run(stripe_webhook_endpoint, capsys, args(fake, url=URL, connect=True))
    assert result["changed"] is False
    assert any("cannot be checked" in w for w in result["warnings"])


def test_delete_check_mode_then_real_then_idempotent(fake: FakeStripe, capsys: pytest.CaptureFixture[str]) -> None:
    existing = fake.add_endpoint(url=URL, metadata={"payments_deploy_id": "prod"})
    absent = args(fake, marker="prod", state="absent")
    check = run(stripe_webhook_endpoint, capsys, absent, check=True, diff=True)
    assert check["changed"] is True and check["operation"] == "deleted" and check["diff"]["after"] == {}
    assert existing["id"] in fake.endpoints
    result = run(stripe_webhook_endpoint, capsys, absent)
    assert result["operation"] == "deleted" and result["previous_endpoint"]["id"] == existing["id"]
    assert fake.endpoints == {}
    again = run(stripe_webhook_endpoint, capsys, absent)
    assert again["changed"] is False and again["operation"] == "none"


def test_stripe_error_is_structured_and_keyless(fake: FakeStripe, capsys: pytest.CaptureFixture[str]) -> None:
    fake.add_fault("POST", "/v1/webhook_endpoints", 400)
    result = run(stripe_webhook_endpoint, capsys, endpoint_args(fake))
    assert result["failed"] is True and "creating the webhook endpoint failed" in result["msg"]
    error = result["stripe_error"]
    assert error["http_status"] == 400 and error["type"] == "api_error" and error["request_id"].startswith("req_")
    assert TEST_KEY not in result["_raw"]


def test_rejected_key_message_shows_only_the_hint(fake: FakeStripe, capsys: pytest.CaptureFixture[str]) -> None:
    other_key = "sk_test_" + "z" * 20 + "9876"
    result = run(stripe_webhook_endpoint_info, capsys, dict(args(fake), api_key=other_key))
    assert result["failed"] is True and result["stripe_error"]["http_status"] == 401
    assert other_key not in result["_raw"]


def test_existing_endpoint_with_missing_secret_file_warns(fake: FakeStripe, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    fake.add_endpoint(url=URL, enabled_events=EVENTS, metadata={"payments_deploy_id": "prod"})
    result = run(stripe_webhook_endpoint, capsys, endpoint_args(fake, secret_file=str(tmp_path / "secret")))
    assert result["changed"] is False and result["secret_file_written"] is False
    assert any("only when it creates" in w for w in result["warnings"])
    assert not os.path.exists(tmp_path / "secret")


def test_info_filters_and_never_returns_secrets(fake: FakeStripe, capsys: pytest.CaptureFixture[str]) -> None:
    created = run(stripe_webhook_endpoint, capsys, endpoint_args(fake))
    other = fake.add_endpoint(url="https://other.example.com/hook")
    everything = run(stripe_webhook_endpoint_info, capsys, args(fake))
    assert everything["total"] == 2 and {e["id"] for e in everything["endpoints"]} == {created["endpoint"]["id"], other["id"]}
    assert "whsec_" not in everything["_raw"]
    by_marker = run(stripe_webhook_endpoint_info, capsys, args(fake, marker="prod"))
    assert [e["id"] for e in by_marker["endpoints"]] == [created["endpoint"]["id"]]
    by_url = run(stripe_webhook_endpoint_info, capsys, args(fake, url=other["url"]))
    assert [e["id"] for e in by_url["endpoints"]] == [other["id"]]
    by_id = run(stripe_webhook_endpoint_info, capsys, args(fake, id=other["id"], url=URL))
    assert by_id["endpoints"] == []


# return_secret: the signing secret handed to a no_log task only, no file written.

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
    assert created["secret"] == secret_of(fake, created["endpoint"]["id"])
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
    assert result["secret"] == secret_of(fake, result["endpoint"]["id"])


def test_without_return_secret_the_secret_stays_masked(fake: FakeStripe, capsys: pytest.CaptureFixture[str]) -> None:
    created = run(stripe_webhook_endpoint, capsys, endpoint_args(fake, _ansible_no_log=True))
    assert created["secret_issued"] is True
    assert secret_of(fake, created["endpoint"]["id"]) not in created["_raw"]
