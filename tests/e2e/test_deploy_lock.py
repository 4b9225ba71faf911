"""One deploy or rollback per environment at a time: a second run is refused quickly and names the holder; a killed
run's lock expires with its lease; unlock.yml force-releases a lock and journals why."""
from __future__ import annotations

import json
import os
import signal
import time

import pytest

from conftest import start_playbook
from helpers import history, live, lock_file, other_release, versions_or_nothing

pytestmark = pytest.mark.timeout(900)


@pytest.fixture
def production_live(lab, playbook) -> None:
    if versions_or_nothing(lab["production_url"]) != {"1.1.0"}:
        assert playbook("deploy.yml", "-e", "release_version=1.1.0").rc == 0
    assert not lock_file(lab).exists()


def wait_for_lock(lab, phases: set[str] | None = None, timeout: float = 120) -> dict:
    """The lock once a run holds it (in one of the phases, when given)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            lock = json.loads(lock_file(lab).read_text())
        except (FileNotFoundError, ValueError):
            lock = None
        if lock and (phases is None or lock.get("phase") in phases):
            return lock
        time.sleep(0.2)
    raise AssertionError(f"no run took the deploy lock (phases {phases}) within {timeout} s")


def test_two_concurrent_deploys_exactly_one_proceeds(lab, playbook, tmp_path):
    # A real deploy that switches colours (the other release; 1.0.0 on a fresh lab, as its first deploy), so that the
    # first run holds the lock for a while.
    serving = versions_or_nothing(lab["production_url"])
    version = other_release(serving.pop()) if len(serving) == 1 else "1.0.0"
    assert not lock_file(lab).exists()
    first = start_playbook("deploy.yml", "-e", f"release_version={version}", log=tmp_path / "first.log")
    try:
        holder = wait_for_lock(lab)
        started = time.monotonic()
        second = playbook("deploy.yml", "-e", f"release_version={version}")
        refused_after = time.monotonic() - started
        assert first.wait(timeout=600) == 0, (tmp_path / "first.log").read_text()[-3000:]
    finally:
        if first.poll() is None:
            os.killpg(first.pid, signal.SIGKILL)
    print(f"the second deploy was refused after {refused_after:.1f} s")
    assert second.rc != 0
    assert "deploy lock of production is held by" in second.text, second.output[-2000:]
    assert holder["holder"]["playbook"] in second.text and f"deploy {version}" in second.text
    assert "unlock" in second.text
    assert "Install the release files" not in second.text
    assert not lock_file(lab).exists(), "the lock outlived the run that held it"
    assert live(lab["production_url"])[0] == {version}


@pytest.mark.extended
def test_a_killed_runs_lock_expires_with_its_lease(lab, playbook, production_live, tmp_path):
    lease = 20
    run = start_playbook("deploy.yml", "-e", "release_version=1.1.0", "-e", "deploy_force_idle=true",
                         "-e", f"deploy_lock_lease_seconds={lease}", log=tmp_path / "killed.log")
    lock = wait_for_lock(lab, phases={"Stripe webhooks", "install", "backup", "migrate"})
    os.killpg(run.pid, signal.SIGKILL)  # the playbook and every worker, mid-run: nothing releases the lock
    run.wait(timeout=30)
    assert lock_file(lab).exists()

    refused = playbook("deploy.yml", "-e", "release_version=1.1.0")
    assert refused.rc != 0 and "deploy lock of production is held by" in refused.text

    left = json.loads(lock_file(lab).read_text())["expires_at"] - time.time()
    assert left <= lease
    time.sleep(max(0.0, left) + 1)
    # 1.1.0 is live: the run converges (no switch), which is enough to take over the expired lock and release it
    after = playbook("deploy.yml", "-e", "release_version=1.1.0")
    assert after.rc == 0
    assert "expired" in after.text  # the run says it took over a dead run's lock
    assert not lock_file(lab).exists()
    assert live(lab["production_url"])[0] == {"1.1.0"}
    assert lock["holder"]["operation"] == "deploy 1.1.0"


@pytest.mark.extended
def test_unlock_needs_a_reason_and_journals_it(lab, playbook, production_live, tmp_path):
    run = start_playbook("rollback.yml", "-e", "deploy_lock_lease_seconds=600", log=tmp_path / "rollback.log")
    wait_for_lock(lab)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait(timeout=30)
    held = json.loads(lock_file(lab).read_text())

    no_reason = playbook("unlock.yml", "-e", "deploy_environment=production")
    assert no_reason.rc != 0 and "Name the environment and say why" in no_reason.text
    assert lock_file(lab).exists()

    reason = "rollback killed by the test; checked that nothing runs"
    unlocked = playbook("unlock.yml", "-e", "deploy_environment=production", "-e", json.dumps({"reason": reason}))
    assert unlocked.rc == 0
    assert not lock_file(lab).exists()
    note = [r for r in history(lab) if r.get("kind") == "unlock"][-1]
    assert note["reason"] == reason and note["released"]["holder"] == held["holder"]
    # The killed rollback may have flipped traffic already: put production back on what the fixture wants.
    if versions_or_nothing(lab["production_url"]) != {"1.1.0"}:
        assert playbook("deploy.yml", "-e", "release_version=1.1.0").rc == 0
