"""Production refuses an artifact that did not pass staging; promote.yml takes one through both environments. (An
override with its reason: test_contract_rollback.py, whose fixture release never ran on staging.)"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import REPO
from helpers import journal, live, lock_file, map_colour, published_sha256, sign_off_releases, versions_or_nothing

pytestmark = pytest.mark.timeout(1200)


# A version of its own per test: an artifact that passed staging in one test must not be evidence in the next.
# (1.2.x and 1.3.x are other tests' releases.)
VERSIONS = {"test_production_refuses_a_release_that_did_not_pass_staging": "1.4.0",
            "test_promote_takes_a_release_through_staging_to_production": "1.4.1"}


@pytest.fixture
def unstaged_release(lab, playbook, request):
    """A release published but never deployed anywhere; both environments go back to 1.1.0 afterwards."""
    version = VERSIONS[request.node.name]
    for environment, url in (("staging", lab["staging_url"]), ("production", lab["production_url"])):
        if versions_or_nothing(url) != {"1.1.0"}:
            assert playbook("deploy.yml", "-e", "release_version=1.1.0", "-e", f"deploy_environment={environment}").rc == 0
    artifacts = Path(lab["state_dir"]) / "artifacts"
    subprocess.run([sys.executable, str(REPO / "lab" / "build_release.py"), "--version", version,
                    "--output-dir", str(artifacts)], check=True, capture_output=True)
    sign_off_releases(lab)
    yield version
    for environment, url in (("production", lab["production_url"]), ("staging", lab["staging_url"])):
        if versions_or_nothing(url) == {version}:
            assert playbook("rollback.yml", "-e", f"deploy_environment={environment}").rc == 0
    for path in artifacts.glob(f"payment-service-{version}.*"):
        path.unlink()


def test_production_refuses_a_release_that_did_not_pass_staging(lab, playbook, unstaged_release):
    colour = map_colour(lab["haproxy_map_file"])
    run = playbook("deploy.yml", "-e", f"release_version={unstaged_release}")
    assert run.rc != 0
    assert (f"payment-service {unstaged_release} (sha256 {published_sha256(lab, unstaged_release)[:12]}...) has no passing "
            "deploy and smoke test (with its load test) in staging within 7 days") in run.text
    assert "Nothing was changed" in run.text and "staging_gate_override" in run.text
    assert "Install the release files" not in run.text
    assert map_colour(lab["haproxy_map_file"]) == colour and live(lab["production_url"])[0] == {"1.1.0"}
    for host in ("app1", "app2"):
        assert not (Path(lab["state_dir"]) / "hosts" / host / "opt" / "payments" / "releases" / unstaged_release).exists()
    assert not lock_file(lab).exists()


@pytest.mark.extended
def test_promote_takes_a_release_through_staging_to_production(lab, playbook, unstaged_release):
    run = playbook("promote.yml", "-e", f"release_version={unstaged_release}")
    assert run.rc == 0
    assert live(lab["staging_url"])[0] == {unstaged_release}
    assert live(lab["production_url"])[0] == {unstaged_release}
    staged, produced = journal(lab, "deploy", "staging"), journal(lab, "deploy")
    assert staged["release_sha256"] == produced["release_sha256"] == published_sha256(lab, unstaged_release)
    assert staged["staging_gate"] == {"required": False}
    gate = produced["staging_gate"]
    assert gate["passed"] is True and gate["override"] is None
    assert gate["evidence"]["recorded_at"] == staged["recorded_at"] and gate["evidence"]["age_days"] < 1
    for record in (staged, produced):
        assert record["smoke"]["passed"] is True
        assert record["smoke"]["colour"]["latency"]["count"] == record["smoke"]["frontend"]["latency"]["count"] == 10
    assert not lock_file(lab, "staging").exists() and not lock_file(lab).exists()
