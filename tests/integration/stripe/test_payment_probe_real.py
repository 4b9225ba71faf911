"""payment_probe and stripe_key_info against the Stripe emulator, through the ``ansible`` CLI."""

from __future__ import annotations

import typing as t
from pathlib import Path

from stripe_lab import ACCOUNT, KEYS, StripeEmulator, ansible


def probe(emulator: StripeEmulator, collections_dir: Path, *flags: str, key: str = KEYS["test"], **args: t.Any) -> dict[str, t.Any]:
    return ansible(collections_dir, "payment_probe", {"api_base": emulator.url, **args}, *flags, env={"STRIPE_SECRET_KEY": key}).result


def key_info(emulator: StripeEmulator, collections_dir: Path, key: str, **args: t.Any) -> dict[str, t.Any]:
    return ansible(collections_dir, "stripe_key_info", {"api_base": emulator.url, **args}, env={"STRIPE_SECRET_KEY": key}).result


def test_probes_pay_refund_and_report_latency(emulator: StripeEmulator, collections_dir: Path) -> None:
    result = probe(emulator, collections_dir, run_id="deploy-1", count=3, amount=120)
    assert not result.get("failed") and result["changed"] is True
    assert result["charged_total"] == result["refunded_total"] == 360 and result["fresh_probes"] == 3
    intents = {i["id"]: i for i in emulator.payment_intents()}
    assert len(intents) == 3
    for n, one in enumerate(result["probes"], start=1):
        intent = intents[one["payment_intent"]]
        assert intent["status"] == "succeeded" and intent["amount"] == 120
        assert intent["metadata"] == {"probe_run_id": "deploy-1", "probe_n": str(n)}
        charge = emulator.call("GET", f"/v1/charges/{one['charge']}", key=KEYS["test"])
        assert charge["refunded"] is True and charge["amount_refunded"] == 120
        assert one["refund_status"] == "succeeded" and one["list_pages"] >= 1
    latency = result["latency"]
    assert latency["count"] == 3 and latency["p50"] <= latency["p95"] == latency["max"]
    print(f"\nprobe latency against the emulator: p50 {latency['p50']}s p95 {latency['p95']}s per step "
          + ", ".join(f"{step} p95 {s['p95']}s" for step, s in latency["steps"].items()))

    # the same run_id again: Stripe's idempotency replays everything, nothing new is charged
    again = probe(emulator, collections_dir, run_id="deploy-1", count=3, amount=120)
    assert again["changed"] is False and again["fresh_probes"] == 0
    assert all(p["replayed"] == {"create": True, "refund": True} for p in again["probes"])
    assert len(emulator.payment_intents()) == 3


def test_check_mode_charges_nothing(emulator: StripeEmulator, collections_dir: Path) -> None:
    result = probe(emulator, collections_dir, "--check", run_id="deploy-2", count=2)
    assert result["changed"] is True and [p["status"] for p in result["probes"]] == ["planned", "planned"]
    assert emulator.payment_intents() == [] and emulator.requests("POST", "/v1/") == []


def test_decline_reports_the_codes_and_request_id(emulator: StripeEmulator, collections_dir: Path) -> None:
    result = probe(emulator, collections_dir, run_id="deploy-3", payment_method="pm_card_chargeDeclinedInsufficientFunds")
    assert result["failed"] is True
    error = result["stripe_error"]
    assert (error["type"], error["code"], error["decline_code"], error["http_status"]) == ("card_error", "card_declined", "insufficient_funds", 402)
    assert error["request_id"] in result["msg"] and "insufficient_funds" in result["msg"]
    assert result["charged_total"] == 0 and result["probes"][0]["payment_intent"] in {i["id"] for i in emulator.payment_intents()}


def test_sdk_retries_429_and_500(emulator: StripeEmulator, collections_dir: Path) -> None:
    emulator.fault(method="POST", path_prefix="/v1/payment_intents", kind="status", status=429, should_retry=True, count=1)
    emulator.fault(method="POST", path_prefix="/v1/refunds", kind="status", status=500, count=1)
    result = probe(emulator, collections_dir, run_id="deploy-4", max_network_retries=2)
    assert not result.get("failed"), result["msg"]
    posts = {c["path"]: c for c in result["api_calls"] if c["method"] == "POST"}
    assert posts["/v1/payment_intents"]["attempt_statuses"] == [429, 200]
    assert posts["/v1/refunds"]["attempt_statuses"] == [500, 200]
    seen = emulator.requests("POST", "/v1/payment_intents")
    assert [r["status"] for r in seen] == [429, 200] and len({r["idempotency_key"] for r in seen}) == 1
    assert len(emulator.payment_intents()) == 1


def test_key_info_live_test_restricted(emulator: StripeEmulator, collections_dir: Path) -> None:
    live = key_info(emulator, collections_dir, KEYS["live"], expect_mode="live", expect_kind="secret", expect_account=ACCOUNT)
    assert not live.get("failed") and (live["kind"], live["mode"], live["livemode"], live["account"]) == ("secret", "live", True, ACCOUNT)
    assert live["key_hint"] == "sk_live_\u2026abcd"

    restricted = key_info(emulator, collections_dir, KEYS["restricted_test"])
    assert not restricted.get("failed") and (restricted["kind"], restricted["livemode"]) == ("restricted", False)
    assert (restricted["account"] is None) == (restricted["account_error"] is not None)

    mismatch = key_info(emulator, collections_dir, KEYS["test"], expect_mode="live", expected_by="production")
    assert mismatch["failed"] is True
    assert mismatch["msg"] == "production expects a live key: STRIPE_SECRET_KEY is a test key (sk_test_\u2026efgh)"

    unknown = key_info(emulator, collections_dir, "sk_live_" + "0" * 40)
    assert unknown["failed"] is True and unknown["key_valid"] is False and unknown["balance_error"]["http_status"] == 401
