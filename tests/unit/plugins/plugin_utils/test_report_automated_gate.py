"""A manual gate the run checks itself (the map's gate.automated_by, enabled by the inventory): the run report shows
the named check's outcome from the run's own results, and falls back to the attestation when the production gate did
not list the line as automated."""

from __future__ import annotations

import typing as t

import pytest

from ansible_collections.payments.deploy.plugins.plugin_utils.report_checklist import judge_line

LINE = {"id": "postdeploy.functional.email-notifications", "line": 132, "text": "Verify email notifications sent",
        "section": "Post-Deployment", "kind": "item", "status": "gate",
        "gate": {"role": "attestation", "reason": "a person reads the receipt without a mailbox",
                 "automated_by": {"variable": "smoke_test_mailbox_url", "module": "payments.deploy.smoke_test", "check": "email"}},
        "evidence": [{"module": "payments.deploy.smoke_test", "fields": ["checks", "failed_checks"]}]}
AUTOMATED = {"automated_lines": [LINE["id"]]}


def smoke(status: str, *checks: dict[str, t.Any], host: str = "lb1") -> dict[str, t.Any]:
    return {"action": "payments.deploy.smoke_test", "task": "Smoke-test the service", "host": host, "status": status,
            "fields": {"checks": list(checks), "failed_checks": [c["name"] for c in checks if c.get("passed") is False]}}


def email(target: str, **outcome: t.Any) -> dict[str, t.Any]:
    return {"name": "email", "target": target, "seconds": 0.2, **outcome}


@pytest.mark.parametrize(("results", "expected"), [
    ([smoke("ok", email("app1-green", passed=True), email("app2-green", passed=True))], "verified"),
    # the colour's smoke test skipped it, the frontend's checked it: it ran, and passed wherever it ran
    ([smoke("ok", email("app1-green", skipped="not asked")), smoke("ok", email("frontend", passed=True))], "verified"),
    ([smoke("ok", email("app1-green", passed=True), email("app2-green", passed=False))], "failed"),
    ([smoke("failed")], "failed"),
    ([smoke("ok", email("app1-green", skipped="no mailbox_url: the receipts cannot be read"))], "not run"),
    ([smoke("ok", {"name": "refund", "target": "app1-green", "passed": True})], "not run"),
    ([], "not run"),
])
def test_an_automated_gate_shows_its_check(results: list[dict[str, t.Any]], expected: str) -> None:
    judged = judge_line(LINE, results, AUTOMATED)
    assert judged["run_status"] == expected
    assert judged["recorded"] == {"automated_by": LINE["gate"]["automated_by"]}


def test_without_the_gate_listing_it_the_attestation_counts_as_before() -> None:
    results = [smoke("ok", email("app1-green", passed=True))]
    attested = {"attestations": {LINE["id"]: {"by": "Grace Hopper", "date": "2026-11-28", "reference": "MAIL-1"}}}
    assert judge_line(LINE, results, attested)["run_status"] == "attested"
    assert judge_line(LINE, results, {})["run_status"] == "not recorded"
