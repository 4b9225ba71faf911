"""The example inventory deploys: inventories/example/production, overlaid only with the lab's addresses, paths and
secrets (inventories/example/lab-overlay.yml), runs a real signed deploy on the lab. A variable that a playbook
needs and the example lacks fails the deploy, and so fails this test until the example has it."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from conftest import REPO, run_playbook
from helpers import journal, live, other_release, versions_or_nothing

pytestmark = pytest.mark.timeout(900)
EXAMPLE = REPO / "inventories" / "example"
OVERLAY = EXAMPLE / "lab-overlay.yml"
# What the overlay may set that the example does not: its own helpers, the vault's values, how the lab's hosts are
# reached and run (a directory each, the local connection, supervisord as the lab user) and the S3 endpoint.
LAB_ONLY = {"ansible_connection", "release_service_group", "release_files_owner", "release_files_group",
            "backup_s3_endpoint_url", "restore_s3_endpoint_url"}


def example_vars(environment: str) -> dict:
    return yaml.safe_load((EXAMPLE / environment / "group_vars" / "all" / "main.yml").read_text())


def vault_names(environment: str) -> set[str]:
    return set(yaml.safe_load((EXAMPLE / environment / "group_vars" / "all" / "vault.yml.example").read_text()))


def test_the_overlay_replaces_only_what_the_example_has():
    overlay = yaml.safe_load(OVERLAY.read_text())
    production = example_vars("production")
    extra = {name for name in overlay if not name.startswith(("lab_", "vault_"))} - set(production) - LAB_ONLY
    assert not extra, f"the overlay sets {sorted(extra)}, which the example inventory does not list"
    secrets = {name for name in overlay if name.startswith("vault_")}
    assert secrets == vault_names("production"), "the overlay's secrets and vault.yml.example disagree"


def test_staging_lists_what_production_lists():
    production, staging = example_vars("production"), example_vars("staging")
    # Only production reads the staging journal (the staging gate) and needs sign-offs.
    assert set(production) - set(staging) == {"preflight_staging_gate_journal_host", "production_gate_signoff_file"}
    assert set(staging) <= set(production)
    assert staging["deploy_environment"] == "staging" and production["deploy_environment"] == "production"


@pytest.mark.extended
def test_the_example_inventory_deploys_a_signed_release_on_the_lab(lab):
    live_now = versions_or_nothing(lab["production_url"])
    target = other_release(next(iter(live_now), "1.0.0"))
    run = run_playbook("deploy.yml", "-e", f"@{OVERLAY}", "-e", f"release_version={target}", "-e", "deploy_bake=false",
                       inventory=EXAMPLE / "production")
    assert run.rc == 0
    assert live(lab["production_url"])[0] == {target}
    record = journal(lab, "deploy")
    assert record["release_to"] == target and record["smoke"]["passed"] is True
    # The example requires signatures in production: the artifact's minisign signature was checked on every app host.
    blocks = re.findall(r"Verify the signature of payment-service-[\d.]+\.tar\.gz\] \*+\n((?:.+\n)+)", run.output)
    checks = sorted(re.findall(r"^(ok|skipping|changed|fatal): \[([^\]]+)\]", "".join(blocks), re.M))
    assert checks == [("ok", "app1.payments.example.com"), ("ok", "app2.payments.example.com")], checks
    assert run.recap["app1.payments.example.com"]["failed"] == 0 and run.recap["app2.payments.example.com"]["failed"] == 0
    for host in ("app1", "app2"):
        installed = Path(lab["state_dir"]) / "hosts" / host / "opt" / "payments" / "releases" / target
        assert installed.is_dir()
    # Back to the release the lab inventory put live, deployed with the lab inventory: later tests converge on the
    # live colour, and the example's environment (its CORS origin, receipt sender) differs from the lab's, which the
    # release role refuses to change under live traffic. (A rollback would verify the example's host names.)
    if live_now:
        [previous] = live_now
        back = run_playbook("deploy.yml", "-e", f"release_version={previous}")
        assert back.rc == 0
        assert live(lab["production_url"])[0] == live_now
