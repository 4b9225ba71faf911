"""The smoke tests catch a deliberately wrong release before it gets traffic, and name the check that caught it.

Releases built with a fault baked in (authentication disabled, no security headers) are deployed to staging: the smoke
test of the idle colour fails on the matching check, the switch never happens, and the lock is released.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import REPO
from helpers import live, lock_file, map_colour, sign_off_releases, versions_or_nothing

pytestmark = pytest.mark.timeout(900)
FAULTS = {"auth-disabled": ("1.3.0", "authentication"), "no-security-headers": ("1.3.1", "security_headers")}


@pytest.fixture
def staging_on_1_1_0(lab, playbook) -> str:
    if versions_or_nothing(lab["staging_url"]) != {"1.1.0"}:
        assert playbook("deploy.yml", "-e", "release_version=1.1.0", "-e", "deploy_environment=staging").rc == 0
    return map_colour(lab["haproxy_map_file"], "staging")


@pytest.fixture
def faulty_release(lab, request):
    version, check = FAULTS[request.param]
    artifacts = Path(lab["state_dir"]) / "artifacts"
    subprocess.run([sys.executable, str(REPO / "lab" / "build_release.py"), "--version", version, "--fault",
                    request.param, "--output-dir", str(artifacts)], check=True, capture_output=True)
    sign_off_releases(lab)
    yield version, check
    for path in artifacts.glob(f"payment-service-{version}.*"):
        path.unlink()


@pytest.mark.parametrize("faulty_release", sorted(FAULTS), indirect=True)
def test_smoke_test_of_the_idle_colour_catches_the_fault(lab, playbook, staging_on_1_1_0, faulty_release):
    version, check = faulty_release
    started = time.monotonic()
    run = playbook("deploy.yml", "-e", f"release_version={version}", "-e", "deploy_environment=staging")
    print(f"failed after {time.monotonic() - started:.1f} s")
    assert run.rc != 0
    assert "Failed during smoke test of the idle colour" in run.text
    assert f"{check} on stg1-" in run.text, run.output[-3000:]
    assert "Switch to the new colour" not in run.text
    assert map_colour(lab["haproxy_map_file"], "staging") == staging_on_1_1_0
    assert live(lab["staging_url"])[0] == {"1.1.0"}
    assert not lock_file(lab, "staging").exists()
