"""smoke_test against the lab's staging frontend (the reference service, the Stripe emulator in test mode, the SMTP
sink's mailbox), through ansible-playbook."""

from __future__ import annotations

import time
import typing as t
import uuid
from pathlib import Path

import pytest

from smoke_lab import LAB_CORS_ORIGIN, run_smoke, stripe_get

pytestmark = pytest.mark.timeout(600)


def smoke_args(lab: dict[str, t.Any], **extra: t.Any) -> dict[str, t.Any]:
    args = {"targets": [{"name": "staging-frontend", "url": lab["staging_url"]}],
            "run_id": f"itest-{uuid.uuid4().hex[:12]}", "stripe_api_base": lab["stripe_api"],
            "mailbox_url": lab["mailbox_url"], "cors_allowed_origin": LAB_CORS_ORIGIN, "payment_count": 3}
    args.update(extra)
    return args


def assert_clean(output: str, secrets: dict[str, str]) -> None:
    for name in ("api_key", "admin_key", "smoke_key", "stripe_test_key"):
        assert secrets[name] not in output, f"the {name} is in the output"


def test_staging_passes_every_check_and_keeps_no_money(lab: dict[str, t.Any], collections_dir: Path,
                                                       tmp_path: Path) -> None:
    run = run_smoke(collections_dir, tmp_path, smoke_args(lab), lab["secrets"])
    result = run.result
    assert not result.get("failed"), result.get("msg")
    assert result["changed"] is True and result["failed_checks"] == []
    assert not [c for c in result["checks"] if "passed" not in c], "a check was skipped"
    key = lab["secrets"]["stripe_test_key"]
    for payment in result["payments"]:
        intent = stripe_get(lab["stripe_api"], key, f"/v1/payment_intents/{payment['payment_intent']}")
        assert intent["metadata"]["payment_id"] == payment["payment_id"] and intent["amount"] == 50
        charge = stripe_get(lab["stripe_api"], key, f"/v1/charges/{intent['latest_charge']}")
        assert charge["refunded"] is True and charge["amount_refunded"] == charge["amount"]
    latency = result["latency"]
    print(f"\nsmoke test of staging: {len(result['checks'])} checks in {result['duration']} s; payment POSTs "
          f"p50 {latency['p50']} s, p95 {latency['p95']} s, max {latency['max']} s")


def test_check_mode_makes_no_payment(lab: dict[str, t.Any], collections_dir: Path, tmp_path: Path) -> None:
    # Stripe's created is in whole seconds: intents of the previous test may share the second this one starts in,
    # so what counts is the set of intents that were not there before.
    key = lab["secrets"]["stripe_test_key"]
    since = int(time.time()) - 60
    listing = f"/v1/payment_intents?limit=100&created[gte]={since}"
    before = {intent["id"] for intent in stripe_get(lab["stripe_api"], key, listing)["data"]}
    run = run_smoke(collections_dir, tmp_path, smoke_args(lab), lab["secrets"], "--check")
    assert not run.result.get("failed"), run.result.get("msg")
    assert run.result["changed"] is False and run.result["payments"] == []
    assert len(run.result["plan"]["payments"]) == 3
    made = {intent["id"] for intent in stripe_get(lab["stripe_api"], key, listing)["data"]} - before
    assert made == set()


def test_a_failure_names_the_check_and_shows_no_secret(lab: dict[str, t.Any], collections_dir: Path,
                                                       tmp_path: Path) -> None:
    args = smoke_args(lab, expected_version="0.0.0-none", checks=["contract", "authentication", "admin_role"])
    run = run_smoke(collections_dir, tmp_path, args, lab["secrets"], "-vvvv", json_output=False)
    assert run.returncode != 0
    assert "contract on staging-frontend: GET /version answered version" in run.output
    assert_clean(run.output, lab["secrets"])
