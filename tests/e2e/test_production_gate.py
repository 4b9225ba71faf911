"""Production starts only with the checklist's sign-offs for the very artifact, its manual gates attested or waived
with a justification: anything less is refused in preflight, before the lock is kept or anything changes. What a
signed-off deploy records (journal, run report, test attestation) is checked on test_blue_green.py's deploy."""
from __future__ import annotations

import pytest
import yaml

from helpers import history, live, lock_file, map_colour, other_release
from signoff_evidence import lab_signoffs

pytestmark = pytest.mark.timeout(900)


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
