"""The production_gate role run for real with ansible-playbook on this machine: production refuses to start (and
changes nothing) without current sign-offs for its artifact, with an unjustified waiver or with weak secrets, and every
reason comes in one message; a complete sign-off file passes and is recorded; staging needs none of it."""

from __future__ import annotations

import hashlib
import typing as t

SECRETS_PLAY = """- name: The secret checks alone
  hosts: loadbalancers
  gather_facts: false
  tasks:
    - name: Judge the secrets
      ansible.builtin.include_role:
        name: payments.deploy.production_gate
        tasks_from: secrets
"""

GateWorld = t.Any  # conftest.GateWorld (fixtures only are shared with the suite)


def refused(run: t.Any, world: GateWorld) -> str:
    """The gate's one failure, after checking that nothing changed and no secret was shown."""
    assert run.rc == 2, run.stdout
    assert not world.marker.exists() and run.changed() == 0
    assert world.secrets_shown(run.stdout) == []
    message = run.failure()
    assert message.startswith("production is not signed off for this artifact"), message
    return message


def test_refused_without_signoffs(gate_world: GateWorld) -> None:
    run = gate_world.run()
    message = refused(run, gate_world)
    assert "1 problem(s), nothing was changed. no sign-offs were given: set production_gate_signoff_file" in message
    judged = [result for name, result in run.results() if name == "Judge the sign-offs, attestations and waivers"]
    assert judged and all(result.get("skipped") for result in judged)


def test_refused_with_an_empty_file_names_every_role_and_gate(gate_world: GateWorld) -> None:
    message = refused(gate_world.run({"production_gate_signoff_file": gate_world.write_signoffs({})}), gate_world)
    assert "7 problem(s)" in message
    for role in ("development_lead", "security_officer", "operations_manager", "business_owner"):
        assert f"the {role} has not signed off" in message
    assert ("checklist line pre-security-pentest (Penetration testing completed) is a manual gate with no attestation "
            "(by the security_officer) and no waiver") in message
    assert "pre-security " not in message  # a group line needs nothing


def test_refused_with_an_unjustified_waiver(gate_world: GateWorld) -> None:
    document = gate_world.complete()
    document["waivers"]["pre-compliance-pci"]["justification"] = "N/A"
    message = refused(gate_world.run({"production_gate_signoff_file": gate_world.write_signoffs(document)}), gate_world)
    assert "1 problem(s)" in message
    assert ("the waiver of checklist line pre-compliance-pci has no justification (a placeholder such as n/a, TBD or none "
            "is not one)") in message


def test_refused_with_a_signoff_for_another_artifact(gate_world: GateWorld) -> None:
    document = gate_world.complete()
    other = hashlib.sha256(b"an older build").hexdigest()
    document["signoffs"]["security_officer"]["sha256"] = other
    document["signoffs"]["business_owner"]["date"] = "2020-01-01"
    document["attestations"]["pre-perf-laod"] = document["attestations"].pop("pre-perf-load")
    message = refused(gate_world.run({"production_gate_signoff_file": gate_world.write_signoffs(document)}), gate_world)
    assert "4 problem(s)" in message
    assert (f"the security_officer sign-off approves another artifact (sha256 {other[:12]}..., this deploy is "
            f"{gate_world.sha256[:12]}...)") in message
    assert "the business_owner sign-off is dated 2020-01-01" in message
    assert "the attestation of checklist line pre-perf-laod: no line of the checklist map has this id (a typo?)" in message
    assert "checklist line pre-perf-load (Load testing completed) is a manual gate" in message


def test_accepted_with_a_complete_file_and_recorded(gate_world: GateWorld) -> None:
    document = gate_world.complete()
    run = gate_world.run({"production_gate_signoff_file": gate_world.write_signoffs(document)})
    assert run.rc == 0, run.failure() or run.stdout
    assert gate_world.marker.exists() and run.changed() == 1
    record = run.record()
    assert record["required"] is True and record["passed"] is True and record["environment"] == "production"
    assert record["release_sha256"] == gate_world.sha256
    assert {role: (s["name"], s["reference"], s["date"], s["sha256"], s["source"]) for role, s in record["signoffs"].items()} == {
        role: (s["name"], s["reference"], s["date"], s["sha256"], "file") for role, s in document["signoffs"].items()}
    assert sorted(record["attestations"]) == ["pre-perf-load", "pre-security-pentest"]
    assert record["attestations"]["pre-perf-load"]["reference"] == "LOAD-311"
    assert record["waivers"]["pre-compliance-pci"]["justification"] == document["waivers"]["pre-compliance-pci"]["justification"]
    assert record["signoff_file"] == str(gate_world.base / "signoffs.yml")
    assert record["signoff_file_sha256"] == hashlib.sha256((gate_world.base / "signoffs.yml").read_bytes()).hexdigest()
    assert record["secrets"] == {"checked": ["HASH_SALT", "DATABASE_URL", "REDIS_URL", "STRIPE_WEBHOOK_SECRET"],
                                 "hosts": ["app1", "app2"], "passed": True}
    assert gate_world.secrets_shown(run.stdout) == []


def test_signoffs_from_extra_vars_as_an_approval_step_passes_them(gate_world: GateWorld) -> None:
    document = gate_world.complete()
    approval = {"production_gate_signoffs": document["signoffs"], "production_gate_attestations": document["attestations"],
                "production_gate_waivers": document["waivers"]}
    run = gate_world.run(extra_vars=approval)
    assert run.rc == 0, run.failure() or run.stdout
    assert {s["source"] for s in run.record()["signoffs"].values()} == {"variables"}
    assert run.record()["signoff_file"] is None


def test_weak_secrets_are_refused_with_the_signoff_problems(gate_world: GateWorld) -> None:
    gate_world.envs["app1"] = {**gate_world.envs["app1"], "HASH_SALT": gate_world.staging_salt,
                               "REDIS_URL": gate_world.envs["app1"]["REDIS_URL"].replace("rediss://", "redis://")}
    gate_world.envs["app2"]["STRIPE_WEBHOOK_SECRET"] = ""
    document = gate_world.complete()
    del document["signoffs"]["development_lead"]
    message = refused(gate_world.run({"production_gate_signoff_file": gate_world.write_signoffs(document)}), gate_world)
    assert "5 problem(s)" in message
    assert "the development_lead has not signed off" in message
    assert "app1: HASH_SALT is the same as staging's" in message
    assert "app1: REDIS_URL uses redis://: use rediss://" in message
    assert "app2: STRIPE_WEBHOOK_SECRET is empty" in message
    assert "the app hosts of production do not share one HASH_SALT" in message


def test_bad_settings_are_refused_before_anything_changes(gate_world: GateWorld) -> None:
    run = gate_world.run({"production_gate_signoff_file": gate_world.write_signoffs(gate_world.complete()),
                          "production_gate_release_sha256": "", "production_gate_max_age_days": 400})
    message = refused(run, gate_world)
    assert "2 problem(s)" in message
    assert "production_gate_release_sha256 must be the artifact's sha256, 64 hex characters (got nothing" in message
    assert "production_gate_max_age_days must be a number of days above 0 and at most 365 (got 400)" in message
    # a value of the wrong type is refused by the role's argument specification, before any task
    run = gate_world.run({"production_gate_signoff_file": "signoffs.yml", "production_gate_max_age_days": "two weeks"})
    assert run.rc == 2 and not gate_world.marker.exists()
    assert "argument 'production_gate_max_age_days' is of type str and we were unable to convert to float" in run.failure()


def test_staging_needs_nothing(gate_world: GateWorld) -> None:
    gate_world.envs["stg1"]["HASH_SALT"] = "salt"  # not even looked at: staging records "not required" and goes on
    run = gate_world.run({"deploy_environment": "staging"})
    assert run.rc == 0, run.failure() or run.stdout
    assert run.record() == {"required": False, "environment": "staging", "passed": True,
                            "reason": "sign-offs are required in production only"}
    assert gate_world.marker.exists()
    ran = [name for name, result in run.results() if not result.get("skipped")]
    after_validation = ran[ran.index("Gate the deploy") + 2:]
    assert after_validation == ["Record that the environment needs no sign-off", "Show the record",
                                "Change something (what a deploy does once the gate passed)"]


def test_the_secrets_entry_point_judges_each_environment_by_its_rules(gate_world: GateWorld) -> None:
    """Outside production a 16-byte salt passes (production wants 32) and plain redis:// too; a known default does not."""
    lab_sized = gate_world.staging_salt[:32]
    gate_world.envs["stg1"].update(HASH_SALT=lab_sized, REDIS_URL=gate_world.envs["stg1"]["REDIS_URL"].replace("rediss", "redis"))
    run = gate_world.run({"deploy_environment": "staging"}, play=SECRETS_PLAY)
    assert run.rc == 0, run.failure() or run.stdout
    gate_world.envs["stg1"]["HASH_SALT"] = "changeme"
    run = gate_world.run({"deploy_environment": "staging"}, play=SECRETS_PLAY)
    assert run.rc == 2 and world_secrets_hidden(run, gate_world)
    assert run.failure() == ("1 problem(s) with the secrets of staging (no value is shown): stg1: HASH_SALT is a known "
                             "default or placeholder: generate one with `openssl rand -hex 32`.")
    gate_world.envs["app1"]["HASH_SALT"] = gate_world.envs["app2"]["HASH_SALT"] = lab_sized
    run = gate_world.run({"production_gate_secret_checks": ["HASH_SALT"]}, play=SECRETS_PLAY)
    assert run.rc == 2
    assert run.failure().startswith("2 problem(s) with the secrets of production (no value is shown): app1: HASH_SALT holds "
                                    "about 16 bytes of randomness, fewer than the 32 required")


def world_secrets_hidden(run: t.Any, world: GateWorld) -> bool:
    return world.secrets_shown(run.stdout) == []
