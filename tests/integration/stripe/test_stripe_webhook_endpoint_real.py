"""stripe_webhook_endpoint and stripe_webhook_endpoint_info against the Stripe emulator, through the ``ansible`` CLI."""

from __future__ import annotations

import stat
import typing as t
from pathlib import Path

from stripe_lab import KEYS, StripeEmulator, ansible

URL = "https://pay.example.com/webhooks/stripe"
EVENTS = ["payment_intent.succeeded", "payment_intent.payment_failed", "charge.refunded"]
ENV = {"STRIPE_SECRET_KEY": KEYS["test"]}


def endpoint(emulator: StripeEmulator, collections_dir: Path, *flags: str, **args: t.Any) -> dict[str, t.Any]:
    return ansible(collections_dir, "stripe_webhook_endpoint", {"api_base": emulator.url, **args}, *flags, env=ENV).result


def test_lifecycle(emulator: StripeEmulator, collections_dir: Path, tmp_path: Path) -> None:
    secret_file = tmp_path / "webhook-secret"
    wanted = {"marker": "production-payments", "url": URL, "enabled_events": EVENTS, "description": "production payment service",
              "metadata": {"team": "payments", "pager": "payments-oncall"}, "api_version": "2024-06-20", "secret_file": str(secret_file)}

    # create: check mode changes nothing, then apply, then a re-run changes nothing
    check = endpoint(emulator, collections_dir, "--check", "--diff", **wanted)
    assert check["changed"] is True and check["operation"] == "created"
    assert emulator.endpoints() == [] and not secret_file.exists()

    created = endpoint(emulator, collections_dir, "--diff", **wanted)
    assert created["changed"] is True and created["operation"] == "created"
    [stored] = emulator.endpoints()
    assert stored["id"] == created["endpoint"]["id"] and stored["api_version"] == "2024-06-20"
    assert sorted(stored["enabled_events"]) == sorted(EVENTS)
    assert stored["metadata"] == {"team": "payments", "pager": "payments-oncall", "payments_deploy_id": "production-payments",
                                  "payments_deploy_connect": "false"}
    secret = secret_file.read_text()
    assert secret.startswith("whsec_") and stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert "secret" not in stored
    assert created["secret"] != secret and created["secret_issued"] is True

    again = endpoint(emulator, collections_dir, **wanted)
    assert again["changed"] is False and again["operation"] == "none" and again["found_by"] == "marker"
    assert [c["method"] for c in again["api_calls"]] == ["GET"]

    # update in place: one metadata key removed (sent empty), events reordered and extended, description changed
    updated_args = {**wanted, "metadata": {"team": "payments"}, "enabled_events": list(reversed(EVENTS)) + ["charge.dispute.created"],
                    "description": "payments (blue-green)"}
    check = endpoint(emulator, collections_dir, "--check", "--diff", **updated_args)
    assert check["operation"] == "updated" and check["changed_fields"] == ["enabled_events", "description", "metadata"]
    assert "pager" in check["diff"]["before"]["metadata"] and "pager" not in check["diff"]["after"]["metadata"]
    assert emulator.endpoints()[0]["metadata"]["pager"] == "payments-oncall"

    updated = endpoint(emulator, collections_dir, **updated_args)
    assert updated["operation"] == "updated" and updated["endpoint"]["id"] == stored["id"]
    [now] = emulator.endpoints()
    assert now["metadata"] == {"team": "payments", "payments_deploy_id": "production-payments", "payments_deploy_connect": "false"}
    assert now["description"] == "payments (blue-green)" and "charge.dispute.created" in now["enabled_events"]
    # Stripe merges metadata on update: "pager" is gone only because it was sent empty
    assert [r["status"] for r in emulator.requests("POST", f"/v1/webhook_endpoints/{stored['id']}")] == [200]
    assert endpoint(emulator, collections_dir, **updated_args)["changed"] is False

    # an immutable field: refused (endpoint untouched), then replaced with recreate=true
    moved = {**updated_args, "api_version": "2025-01-27.acacia"}
    refused = endpoint(emulator, collections_dir, **moved)
    assert refused.get("failed") is True
    assert "api_version is '2024-06-20', wanted '2025-01-27.acacia'" in refused["msg"] and "recreate=true" in refused["msg"]
    assert emulator.endpoints() == [now] and secret_file.read_text() == secret

    recreated = endpoint(emulator, collections_dir, **moved, recreate=True)
    assert recreated["operation"] == "recreated" and recreated["changed_fields"][0] == "api_version"
    [replacement] = emulator.endpoints()
    assert replacement["id"] != stored["id"] and replacement["api_version"] == "2025-01-27.acacia"
    assert replacement["metadata"] == now["metadata"] and replacement["description"] == now["description"]
    new_secret = secret_file.read_text()
    assert new_secret.startswith("whsec_") and new_secret != secret
    assert endpoint(emulator, collections_dir, **moved)["changed"] is False

    # delete: check mode, real, idempotent
    absent = {"marker": "production-payments", "state": "absent"}
    check = endpoint(emulator, collections_dir, "--check", **absent)
    assert check["changed"] is True and check["operation"] == "deleted" and len(emulator.endpoints()) == 1
    deleted = endpoint(emulator, collections_dir, **absent)
    assert deleted["operation"] == "deleted" and emulator.endpoints() == []
    assert endpoint(emulator, collections_dir, **absent)["changed"] is False


def test_two_endpoints_with_the_url_fail(emulator: StripeEmulator, collections_dir: Path) -> None:
    ids = [emulator.call("POST", "/v1/webhook_endpoints", key=KEYS["test"],
                         form={"url": URL, "enabled_events[0]": "charge.refunded"})["id"] for _unused in range(2)]
    result = endpoint(emulator, collections_dir, url=URL, enabled_events=EVENTS)
    assert result["failed"] is True and all(i in result["msg"] for i in ids)
    assert [e["enabled_events"] for e in emulator.endpoints()] == [["charge.refunded"]] * 2


def test_stripe_rejects_an_unknown_event(emulator: StripeEmulator, collections_dir: Path) -> None:
    result = endpoint(emulator, collections_dir, url=URL, enabled_events=["payment_intent.exploded"])
    assert result["failed"] is True and result["stripe_error"]["http_status"] == 400
    assert result["stripe_error"]["param"].startswith("enabled_events") and emulator.endpoints() == []


def test_info_lists_every_page_without_secrets(emulator: StripeEmulator, collections_dir: Path) -> None:
    for n in range(12):
        emulator.call("POST", "/v1/webhook_endpoints", key=KEYS["test"],
                      form={"url": f"https://hooks.example.com/{n}", "enabled_events[0]": "charge.refunded", "metadata[payments_deploy_id]": f"m{n}"})
    run = ansible(collections_dir, "stripe_webhook_endpoint_info", {"api_base": emulator.url}, env=ENV)
    assert run.result["total"] == 12 and len(run.result["endpoints"]) == 12
    assert "whsec_" not in run.output
    one = ansible(collections_dir, "stripe_webhook_endpoint_info", {"api_base": emulator.url, "marker": "m7"}, env=ENV).result
    assert [e["url"] for e in one["endpoints"]] == ["https://hooks.example.com/7"]
