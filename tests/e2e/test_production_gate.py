"""Production starts only with the checklist's sign-offs for the very artifact, its manual gates attested or waived
with a justification: anything less is refused in preflight, before the lock is kept or anything changes."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from helpers import history, journal_dir, live, lock_file, map_colour, other_release

pytestmark = pytest.mark.timeout(900)


def lab_signoffs(lab: dict, version: str) -> dict:
    return yaml.safe_load((Path(lab["state_dir"]) / "signoffs" / f"{version}.yml").read_text())


def test_production_without_valid_signoffs_is_refused_before_anything_changes(lab, playbook, tmp_path):
    [live_before] = live(lab["production_url"])[0]
    target = other_release(live_before)
    colour, records = map_colour(lab["haproxy_map_file"]), len(history(lab))
    document = lab_signoffs(lab, target)
    # The business owner signed the other release, the security officer never signed, and one manual gate is
    # "waived" without a reason.
    document["signoffs"]["business_owner"]["sha256"] = lab_signoffs(lab, live_before)["signoffs"]["business_owner"]["sha256"]
    del document["signoffs"]["security_officer"]
    waived = next(iter(document["attestations"]))
    document["attestations"].pop(waived)
    document["waivers"] = {waived: {"by": "Lab Operations Manager", "date": document["signoffs"]["development_lead"]["date"],
                                    "justification": "n/a"}}
    signoff_file = tmp_path / "signoffs.yml"
    signoff_file.write_text(yaml.safe_dump(document))

    run = playbook("deploy.yml", "-e", f"release_version={target}", "-e", f"production_gate_signoff_file={signoff_file}")

    assert run.rc != 0
    assert "production is not signed off for this artifact" in run.text
    assert "the business_owner sign-off approves another artifact" in run.text
    assert "the security_officer has not signed off" in run.text
    assert f"the waiver of checklist line {waived}" in run.text
    # Refused in preflight: nothing switched, nothing journalled, the lock released.
    assert live(lab["production_url"])[0] == {live_before}
    assert map_colour(lab["haproxy_map_file"]) == colour and len(history(lab)) == records
    assert not lock_file(lab).exists()
    assert not [event for event in run.events
                if event.get("event_data", {}).get("play") == "Install the release files on every app host"]


@pytest.mark.extended
def test_a_signed_off_deploy_records_who_signed(lab, playbook):
    [live_before] = live(lab["production_url"])[0]
    target = other_release(live_before)
    run = playbook("deploy.yml", "-e", f"release_version={target}", "-e", "deploy_bake=false")
    assert run.rc == 0
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
