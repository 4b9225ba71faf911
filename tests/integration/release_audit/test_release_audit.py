"""The release_audit role through ansible-playbook: the dependency gate (production blocks, waivers, staging reports)
and the scan of the new colour's log (card numbers and secrets refused, never shown)."""

from __future__ import annotations

import datetime

from conftest import LAB_ADVISORIES, AuditWorld  # pylint: disable=import-error

JUSTIFIED = "Only reachable through the admin upload endpoint, which is disabled in this release."


def today() -> str:
    return datetime.datetime.now(datetime.timezone.utc).date().isoformat()


def test_production_refuses_a_critical_finding(world: AuditWorld) -> None:
    run = world.run("dependencies")
    assert run.rc != 0
    failure = run.failure()
    assert "TEST-CRIT-0001 (critical, TEST-CRIT-0001 / TEST-ALIAS-0001)" in failure, failure
    assert "payments-example-lib 1.4.0, fixed in 2.0.0" in failure
    assert "TEST-LOW-0002" not in failure  # below the threshold: reported, not blocking
    report = run.result_of("Report the security scan")["msg"]
    assert "TEST-LOW-0002 (low)" in report and "TEST-CRIT-0001 (critical)" in report
    assert not world.marker.exists()


def test_production_passes_with_a_valid_waiver(world: AuditWorld) -> None:
    waiver = {"by": "Grace Hopper", "date": today(), "justification": JUSTIFIED}
    run = world.run("dependencies", release_audit_waivers={"TEST-ALIAS-0001": waiver})
    assert run.rc == 0, run.failure()
    audit = run.result_of("Match the packages against the advisory database")
    assert [(f["id"], f["waiver"]["by"]) for f in audit["waived"]] == [("TEST-CRIT-0001", "Grace Hopper")]
    assert audit["blocking"] == []
    assert world.marker.exists()


def test_an_unjustified_waiver_is_refused(world: AuditWorld) -> None:
    waiver = {"by": "Grace Hopper", "date": today(), "justification": "accepted"}
    run = world.run("dependencies", release_audit_waivers={"TEST-CRIT-0001": waiver})
    assert run.rc != 0
    assert "waivers.TEST-CRIT-0001 is not justified" in run.failure()
    assert not world.marker.exists()


def test_staging_only_reports(world: AuditWorld) -> None:
    run = world.run("dependencies", environment="staging")
    assert run.rc == 0, run.failure()
    warning = run.result_of("Warn about blocking findings outside production")["msg"]
    assert "TEST-CRIT-0001" in warning and "would block production" in warning
    assert world.marker.exists()


def test_the_lab_database_reports_without_blocking_the_runtime(world: AuditWorld) -> None:
    # the interpreter running these tests is the lab's service runtime (inventories/lab: release_runtime_bin_dir)
    run = world.run("dependencies", release_audit_advisory_database=str(LAB_ADVISORIES))
    assert run.rc == 0, run.failure()
    audit = run.result_of("Match the packages against the advisory database")
    assert audit["findings"] and audit["blocking"] == []
    assert audit["packages_scanned"] > 10


def test_a_required_requirements_file_that_is_missing_stops(world: AuditWorld) -> None:
    world.requirements.unlink()
    run = world.run("dependencies", release_audit_requirements_required=True)
    assert run.rc != 0 and "release_audit_requirements_required" in run.failure()


def test_bad_input_is_refused_before_anything_runs(world: AuditWorld) -> None:
    run = world.run("dependencies", release_audit_block_severity="severe")
    assert run.rc != 0 and "release_audit_block_severity" in run.failure()
    assert [name for name, dummy in run.tasks()][-1].startswith("Validating arguments")
    run = world.run("logs", release_audit_log_lines="many")
    assert run.rc != 0 and "release_audit_log_lines" in run.failure()
    assert not world.marker.exists()


def filler(count: int) -> list[str]:
    return [f"2026-11-28 22:00:{i % 60:02d},000 INFO payment_service.api POST /v1/payments 201 request_id=req_{i:06d}"
            for i in range(count)]


def test_a_clean_log_passes(world: AuditWorld) -> None:
    world.write_log(filler(300))
    run = world.run("logs")
    assert run.rc == 0, run.failure()
    scan = run.result_of("Scan the new colour's logs for secrets and card numbers")
    assert scan["scanned"] == [{"path": str(world.log), "first_line": 1, "lines": 300}]
    assert world.marker.exists()


def test_a_card_number_in_the_log_is_refused(world: AuditWorld) -> None:
    world.write_log(filler(50) + ["2026-11-28 22:01:00,000 DEBUG charge payload card=4242 4242 4242 4242"] + filler(5))
    run = world.run("logs")
    assert run.rc != 0
    assert f"{world.log} line 51: card number ending 4242" in run.failure()
    assert "4242 4242 4242 4242" not in run.stdout
    assert not world.marker.exists()


def test_only_the_last_lines_are_scanned(world: AuditWorld) -> None:
    world.write_log(["card=4242424242424242"] + filler(100))
    assert world.run("logs", release_audit_log_lines=100).rc == 0
    assert world.run("logs", release_audit_log_lines=101).rc != 0


def test_a_secret_in_the_log_is_refused_and_never_shown(world: AuditWorld) -> None:
    pieces = world.secret_pieces()
    world.write_log(filler(10) + [f"connecting to redis with {pieces[5]}", f"stripe key {world.env['STRIPE_SECRET_KEY']}"])
    run = world.run("logs", verbosity=3, json_report=False)
    assert run.rc != 0
    assert f"{world.log} line 11: REDIS_URL password" in run.stdout
    assert f"{world.log} line 12: STRIPE_SECRET_KEY" in run.stdout
    for piece in pieces:
        assert piece not in run.stdout and piece not in run.stderr
    assert not world.marker.exists()


def test_check_mode_scans_and_refuses_the_same(world: AuditWorld) -> None:
    world.write_log(filler(20) + ["refund for card 5555-5555-5555-4444"])
    dependencies = world.run("dependencies", check=True)
    assert dependencies.rc != 0 and "TEST-CRIT-0001" in dependencies.failure()
    logs = world.run("logs", check=True)
    assert logs.rc != 0 and "line 21: card number ending 4444" in logs.failure()
