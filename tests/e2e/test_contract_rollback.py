"""A release whose migration is a contract change: rollback restores the pre-deploy backup instead of reverting,
keeps the database it replaces, and re-ingests the payments made since the backup."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import REPO
from helpers import has_column, journal, live, query, sign_off_releases, smoke_payments, versions_or_nothing

pytestmark = pytest.mark.timeout(900)
FIXTURE = REPO / "tests" / "integration" / "migrations" / "fixtures" / "contract_drop_description"


@pytest.fixture
def release_with_contract_change(lab, tmp_path):
    """Release 1.2.0: the reference service plus a change that drops payments.description."""
    source = tmp_path / "payment_service"
    shutil.copytree(REPO / "lab" / "payment_service", source, ignore=shutil.ignore_patterns("__pycache__"))
    migrations = source / "migrations"
    plan = yaml.safe_load((migrations / "plan.yml").read_text())
    plan["changes"] += yaml.safe_load((FIXTURE / "changes.yml").read_text())
    (migrations / "plan.yml").write_text(yaml.safe_dump(plan, sort_keys=False))
    for part in ("deploy", "verify", "revert"):
        shutil.copy(FIXTURE / part / "0005_drop_payments_description.sql", migrations / part)
    artifacts = Path(lab["state_dir"]) / "artifacts"
    subprocess.run([sys.executable, str(REPO / "lab" / "build_release.py"), "--version", "1.2.0", "--source", str(source),
                    "--output-dir", str(artifacts)], check=True, capture_output=True)
    sign_off_releases(lab)
    yield "1.2.0"
    for path in artifacts.glob("payment-service-1.2.0.*"):
        path.unlink()


def schema(lab: dict) -> tuple[list[tuple], list[tuple]]:
    """The columns of the service's tables and the migrations on record: what restoring the backup brings back."""
    return (query(lab, "SELECT table_name, column_name, data_type FROM information_schema.columns "
                       "WHERE table_schema = 'public' ORDER BY 1, 2"),
            query(lab, "SELECT * FROM payments_deploy.changes ORDER BY 1"))


def test_rollback_after_a_contract_change_restores_without_losing_payments(lab, playbook, release_with_contract_change):
    # From the release that is live (1.0.0 after the fault suite: the deploy applies 0003 to 0005, 1.1.0's two
    # expanding changes then the contract one), or 1.1.0 on a lab that serves nothing yet.
    serving = versions_or_nothing(lab["production_url"])
    if len(serving) != 1:
        assert playbook("deploy.yml", "-e", "release_version=1.1.0").rc == 0
        serving = versions_or_nothing(lab["production_url"])
    before = schema(lab)

    # This fixture release never ran on staging: the gate is overridden, with the reason journalled. Both runs go at
    # the highest verbosity: a full deploy (backup, contract migration, smoke payments, switch, journal) and a
    # restoring rollback must print none of the lab's secrets.
    deploy = playbook("deploy.yml", "-e", f"release_version={release_with_contract_change}",
                      "-e", 'staging_gate_override="contract-change fixture release, built for this test only"', "-vvvv")
    assert deploy.rc == 0
    assert_no_secret(lab, deploy.text, "deploy")
    assert (f'The staging gate is overridden for {release_with_contract_change}: '
            '"contract-change fixture release, built for this test only" (journalled).') in deploy.text
    record = journal(lab, "deploy")
    assert record["migration"]["applied"][-1] == "0005_drop_payments_description"
    assert record["migration"]["contract_applied"] is True
    assert not has_column(lab, "payments", "description")
    assert record["staging_gate"] == {"required": True, "source": "staging", "passed": False, "evidence": None,
                                      "override": "contract-change fixture release, built for this test only"}
    made_after_backup = set(smoke_payments(record))

    rollback = playbook("rollback.yml", "-vvvv")
    assert rollback.rc == 0
    assert_no_secret(lab, rollback.text, "rollback")
    assert live(lab["production_url"])[0] == serving
    assert "Restored payments from " + record["backup"]["id"] in rollback.text
    assert schema(lab) == before, "the pre-deploy schema was not restored"
    kept = query(lab, "SELECT count(*) FROM pg_database WHERE datname LIKE 'payments_before_restore_%'", "postgres")[0][0]
    assert kept >= 1
    stored = {row[0] for row in query(lab, "SELECT payload->'data'->'object'->>'id' FROM stripe_events "
                                           "WHERE type = 'payment_intent.succeeded'")}
    assert made_after_backup <= stored, "payments made after the backup were lost by the rollback"


def assert_no_secret(lab: dict, output: str, run: str) -> None:
    assert len(output) > 100000, f"the {run} output is too short to be -vvvv's"
    for name, value in lab["secrets"].items():
        assert value not in output, f"secret {name} appeared in the {run} output"
