"""The runbooks (ansible-runner private data directories in runbooks/) against the lab: a rollback through the
``ansible-runner`` command and a deploy through ``ansible_runner.run()``, each judged on what ansible-runner
reports (status, rc, stats, events) and on what the frontend serves afterwards. Both run the collection as its users
get it: built with ``ansible-galaxy collection build``, installed from the tarball into an empty directory, and
found there by FQCN (the events show every task came from the installed copy, none from the checkout)."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import ansible_runner
import pytest

from helpers import journal, live, other_release

pytestmark = pytest.mark.timeout(900)
REPO = Path(__file__).resolve().parents[2]
RUNNER = REPO / ".venv" / "bin" / "ansible-runner"
DEPLOY_PHASES = ["Reach every host of the run", "Preflight and plan", "Release into the target colour", "Switch traffic and verify"]


@pytest.fixture(scope="module")
def installed_collection(tmp_path_factory) -> Path:
    """The tarball ``ansible-galaxy collection build`` makes of the checkout, installed into an empty directory."""
    top = tmp_path_factory.mktemp("installed")
    galaxy = str(RUNNER.parent / "ansible-galaxy")
    env = {key: value for key, value in os.environ.items() if not key.startswith("ANSIBLE_")}
    built = subprocess.run([galaxy, "collection", "build", str(REPO), "--output-path", str(top / "dist")], capture_output=True,
                           text=True, timeout=300, check=False, env=env, cwd=top)
    assert built.returncode == 0, built.stdout + built.stderr
    [tarball] = (top / "dist").glob("payments-deploy-*.tar.gz")
    done = subprocess.run([galaxy, "collection", "install", "--no-deps", "-p", str(top / "collections"), str(tarball)],
                          capture_output=True, text=True, timeout=300, check=False, env=env, cwd=top)
    assert done.returncode == 0, done.stdout + done.stderr
    return top / "collections"


@pytest.fixture
def runbook_env(lab, monkeypatch, installed_collection):
    """The runbook's own settings (runbooks/*/project/ansible.cfg), not the checkout's, with the installed collection
    first on the collections path; the lab's inventory when it is not the one the runbooks link to (a lab on moved ports)."""
    monkeypatch.delenv("ANSIBLE_CONFIG", raising=False)
    monkeypatch.setenv("ANSIBLE_COLLECTIONS_PATH", str(installed_collection))
    monkeypatch.setenv("PATH", f"{RUNNER.parent}:{os.environ['PATH']}")  # ansible-runner runs the ansible-playbook on PATH
    monkeypatch.setenv("PAYMENTS_LAB_DIR", lab["state_dir"])
    default = Path(lab["inventory"]) == REPO / "inventories" / "lab" / "hosts.yml"
    return {} if default else {"inventory": lab["inventory"]}


def events_of(events, kind: str) -> list[dict]:
    return [event for event in events if event.get("event") == kind]


def task_sources(events) -> set[str]:
    """The directories the run's tasks were read from (the collection's roles and playbooks)."""
    return {event["event_data"]["task_path"].split("/ansible_collections/")[0]
            for event in events_of(events, "playbook_on_task_start") if "/ansible_collections/payments/" in event["event_data"].get("task_path", "")}


def test_roll_back_with_the_runner_command_then_deploy_through_the_runner_api(
        lab, deployed, runbook_env, installed_collection, tmp_path):
    # `deployed`: a deploy on record that replaced an earlier release, which the rollback goes back to
    artifacts = tmp_path / "rollback"
    command = [str(RUNNER), "run", str(REPO / "runbooks" / "rollback"), "-p", "payments.deploy.rollback",
               "--artifact-dir", str(artifacts)]
    if "inventory" in runbook_env:
        command += ["--inventory", runbook_env["inventory"]]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False, env=os.environ.copy())
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    [run_dir] = [path for path in artifacts.iterdir() if path.is_dir()]
    assert (run_dir / "status").read_text() == "successful" and (run_dir / "rc").read_text() == "0"
    rollback_events = [json.loads(path.read_text()) for path in sorted((run_dir / "job_events").glob("*.json"))]
    [stats] = events_of(rollback_events, "playbook_on_stats")
    assert not stats["event_data"]["failures"] and "lb1" in stats["event_data"]["changed"]
    flips = [event for event in events_of(rollback_events, "runner_on_ok")
             if event["event_data"]["task"] == "Switch traffic back to the previous release"]
    assert [event["event_data"]["host"] for event in flips] == ["lb1"] and flips[0]["event_data"]["res"]["changed"] is True
    previous = other_release(deployed)
    assert live(lab["production_url"])[0] == {previous}
    assert journal(lab, "rollback")["release_to"] == previous
    assert task_sources(rollback_events) == {str(installed_collection)}, "every task came from the installed tarball"

    deployed_again = ansible_runner.run(private_data_dir=str(REPO / "runbooks" / "deploy"), playbook="payments.deploy.deploy",
                                        extravars={"release_version": deployed}, artifact_dir=str(tmp_path / "deploy"),
                                        quiet=True, **runbook_env)
    events = list(deployed_again.events)
    assert (deployed_again.status, deployed_again.rc) == ("successful", 0), deployed_again.stdout.read()[-4000:]
    assert not deployed_again.stats["failures"] and not deployed_again.stats["dark"]
    assert {"lb1", "app1", "app2"} <= set(deployed_again.stats["ok"]) and "lb1" in deployed_again.stats["changed"]
    plays = [event["event_data"]["play"] for event in events_of(events, "playbook_on_play_start")]
    assert [phase for phase in plays if phase in DEPLOY_PHASES] == DEPLOY_PHASES
    failed = events_of(events, "runner_on_failed")
    assert all(event["event_data"].get("ignore_errors") for event in failed)
    assert live(lab["production_url"])[0] == {deployed}
    assert journal(lab, "deploy")["release_to"] == deployed
    assert task_sources(events) == {str(installed_collection)}, "every task came from the installed tarball"
