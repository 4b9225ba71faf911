"""The smoke tests catch a deliberately wrong release before it gets traffic, and name the check that caught it.

A release built with two faults baked in (authentication disabled, no security headers) is deployed to staging: the
smoke test of the idle colour runs every check and fails on both matching ones, the switch never happens, and the lock
is released.
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
FAULTS = {"auth-disabled": "authentication", "no-security-headers": "security_headers"}
VERSION = "1.3.0"


@pytest.fixture
def staging_on_1_1_0(lab, playbook) -> str:
    if versions_or_nothing(lab["staging_url"]) != {"1.1.0"}:
        assert playbook("deploy.yml", "-e", "release_version=1.1.0", "-e", "deploy_environment=staging").rc == 0
    return map_colour(lab["haproxy_map_file"], "staging")


@pytest.fixture
def faulty_release(lab):
    artifacts = Path(lab["state_dir"]) / "artifacts"
    faults = [argument for fault in sorted(FAULTS) for argument in ("--fault", fault)]
    subprocess.run([sys.executable, str(REPO / "lab" / "build_release.py"), "--version", VERSION, *faults,
                    "--output-dir", str(artifacts)], check=True, capture_output=True)
    sign_off_releases(lab)
    yield VERSION
    for path in artifacts.glob(f"payment-service-{VERSION}.*"):
        path.unlink()


def test_smoke_test_of_the_idle_colour_catches_every_fault(lab, playbook, staging_on_1_1_0, faulty_release):
    started = time.monotonic()
    run = playbook("deploy.yml", "-e", f"release_version={faulty_release}", "-e", "deploy_environment=staging")
    print(f"failed after {time.monotonic() - started:.1f} s")
    assert run.rc != 0
    assert "Failed during smoke test of the idle colour" in run.text
    for check in FAULTS.values():
        assert f"{check} on stg1-" in run.text, run.output[-3000:]
    assert "Switch to the new colour" not in run.text
    assert map_colour(lab["haproxy_map_file"], "staging") == staging_on_1_1_0
    assert live(lab["staging_url"])[0] == {"1.1.0"}
    assert not lock_file(lab, "staging").exists()
