"""A deploy killed right after its flip: the switch was journaled ahead, so rollback.yml finds it and puts traffic
back, instead of acting on an older record."""
from __future__ import annotations

import json
import time

import pytest

from conftest import start_playbook
from faults import kill_tree
from helpers import history, journal_dir, live, map_colour, versions_or_nothing

pytestmark = pytest.mark.timeout(900)


def wait_for_flip(lab: dict, away_from: str, run, timeout: float = 400) -> None:
    """Return as soon as the production map no longer names away_from (the run's flip)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if map_colour(lab["haproxy_map_file"]) != away_from:
            return
        if run.poll() is not None:
            raise AssertionError(f"the deploy ended (rc {run.returncode}) before it flipped")
        time.sleep(0.05)
    raise AssertionError(f"the deploy did not flip within {timeout} s")


def test_a_deploy_killed_after_its_flip_is_rolled_back_from_its_intent(lab, playbook, tmp_path):
    if versions_or_nothing(lab["production_url"]) != {"1.1.0"}:
        assert playbook("deploy.yml", "-e", "release_version=1.1.0").rc == 0
    before = map_colour(lab["haproxy_map_file"])
    records_before = len(history(lab))

    run = start_playbook("deploy.yml", "-e", "release_version=1.0.0", log=tmp_path / "killed.log")
    try:
        wait_for_flip(lab, before, run)
    finally:
        kill_tree(run.pid)  # the playbook and every worker (each has its own session), before it verifies
        run.wait(timeout=30)
    intent_file = journal_dir(lab) / "switch-intent.json"
    assert intent_file.exists(), (tmp_path / "killed.log").read_text()[-3000:]
    intent = json.loads(intent_file.read_text())
    assert intent["state"] == "switching"
    assert (intent["colour_from"], intent["release_from"], intent["release_to"]) == (before, "1.1.0", "1.0.0")
    assert live(lab["production_url"])[0] == {"1.0.0"}, "the killed run's flip did not happen"
    assert len(history(lab)) == records_before, "the killed run journaled a switch it never verified"

    unlocked = playbook("unlock.yml", "-e", "deploy_environment=production",
                        "-e", json.dumps({"reason": "deploy killed after its flip (test)"}))
    assert unlocked.rc == 0
    rolled = playbook("rollback.yml")
    assert rolled.rc == 0
    assert "unfinished" in rolled.text
    assert map_colour(lab["haproxy_map_file"]) == before
    assert live(lab["production_url"])[0] == {"1.1.0"}
    assert not intent_file.exists()
    last = history(lab)[-1]
    assert (last["kind"], last["run_id"], last["release_to"]) == ("rollback", intent["run_id"], "1.1.0")
