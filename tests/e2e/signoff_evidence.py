"""What a signed-off production deploy must record: the sign-offs for the very artifact in the journal and the run
report, the lines the gate checks verified, and the release's signed test attestation as judged before the switch."""
from __future__ import annotations

import json
from pathlib import Path

import yaml

from helpers import journal_dir, live


def lab_signoffs(lab: dict, version: str) -> dict:
    return yaml.safe_load((Path(lab["state_dir"]) / "signoffs" / f"{version}.yml").read_text())


def assert_signed_off_and_recorded(lab: dict, run, target: str) -> None:
    """A signed-off production deploy of target (run: its PlaybookRun) recorded who signed, for the very artifact, in
    the journal and the run report, with the release's signed test attestation."""
    records = [result["ansible_facts"]["production_gate_record"]
               for result in run.results("Record the sign-offs for the journal and the run report")]
    assert records and all(record == records[0] for record in records)
    recorded = records[0]
    expected = lab_signoffs(lab, target)
    assert recorded["passed"] is True and recorded["required"] is True
    assert {role: entry["name"] for role, entry in recorded["signoffs"].items()} == \
        {role: entry["name"] for role, entry in expected["signoffs"].items()}
    assert recorded["release_sha256"] == expected["signoffs"]["development_lead"]["sha256"]
    assert set(recorded["attestations"]) == set(expected["attestations"])
    assert live(lab["production_url"])[0] == {target}
    # The run report next to the journal names the same sign-offs, and the lines the gate checks are verified in it.
    [named] = run.results("Name this run (its smoke payments' idempotency keys derive from it)")
    run_id = named["ansible_facts"]["deploy_run_id"]
    report = json.loads((journal_dir(lab).parent / "reports" / f"{run_id}.json").read_text())
    assert report["outcome"]["status"] == "succeeded" and report["run_id"] == run_id
    assert report["production_gate"]["signoffs"] == recorded["signoffs"]
    statuses = {line["id"]: line["run_status"] for line in report["checklist"]["lines"]}
    assert statuses["security.env.hash-salt"] == statuses["security.env.database-credentials"] == "verified"
    # The lab's smoke test reads its mailbox: the receipts line is checked by the run, not attested.
    assert recorded["automated_lines"] == ["postdeploy.functional.email-notifications"]
    assert statuses["postdeploy.functional.email-notifications"] == "verified"
    assert (journal_dir(lab).parent / "reports" / f"{run_id}.html").stat().st_size > 10000
    # The journal's record of the switch names them too, bound to the same artifact.
    journalled = json.loads((journal_dir(lab) / "last-deploy.json").read_text())
    assert journalled["run_id"] == run_id
    assert journalled["production_gate"]["signoffs"] == recorded["signoffs"]
    assert journalled["production_gate"]["release_sha256"] == journalled["release_sha256"] == recorded["release_sha256"]
    assert journalled["production_gate"]["attestations"] == len(expected["attestations"])
    # ... and the release's signed test attestation, as judged before the switch: same artifact, its suites' figures.
    [judged] = {json.dumps(result["ansible_facts"]["release_audit_test_report"], sort_keys=True)
                for result in run.results("Record the test attestation for the journal and the report")}
    judged = json.loads(judged)
    tested = journalled["test_report"]
    assert tested["passed"] is tested["signed"] is True and tested["problems"] == []
    assert tested["artifact_sha256"] == journalled["release_sha256"] == judged["artifact_sha256"]
    assert tested["key_id"] == judged["key_id"] and tested["report"]["commit"] == judged["report"]["commit"]
    assert tested["report"]["totals"] == judged["report"]["totals"] and tested["report"]["totals"]["tests"] > 0
    assert tested["report"]["totals"]["failures"] == tested["report"]["totals"]["errors"] == 0
