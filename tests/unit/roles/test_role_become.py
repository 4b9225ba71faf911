"""Roles that write files on a host take a `<role>_become` input: every task that writes (or reads a root-only file, or
signals a service) carries `become: "{{ <role>_become | bool }}"`, and with it a connection user that is not the
files' owner still writes them, as the become user."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import typing as t
from pathlib import Path

import pytest
import yaml

from conftest import COLLECTIONS_DIR

ROLES = Path(__file__).resolve().parents[3] / "roles"
ANSIBLE_PLAYBOOK = str(Path(sys.executable).with_name("ansible-playbook"))

# The roles with a become input and the task files where every host-side write must use it.
BECOME_ROLES = {
    "release": ["fetch.yml", "unpack.yml", "configure.yml", "start.yml", "service_user.yml", "../handlers/main.yml"],
    "loadbalancer": ["main.yml", "reload.yml"],
    "deploy_journal": ["main.yml", "intent.yml", "read.yml", "settle.yml"],
    "rollback_mirror": ["postmortem.yml"],
    "stripe_webhooks": ["save_host_file.yml", "load_host_file.yml"],
    "monitoring": ["main.yml", "targets.yml", "rules.yml", "reload.yml", "../handlers/main.yml"],
    "maintenance": ["timers.yml", "report.yml"],
    "pgbackrest": ["main.yml", "deploy.yml", "restore.yml"],
    # its other task files run inside main.yml's restore block, which carries the keyword
    "dr_drill": ["main.yml", "preflight.yml"],
}
# Modules that write, read root-only files or change services on the host they run on.
HOST_MODULES = {
    "ansible.builtin.copy", "ansible.builtin.template", "ansible.builtin.file", "ansible.builtin.lineinfile",
    "ansible.builtin.get_url", "ansible.builtin.slurp", "ansible.builtin.stat", "ansible.builtin.systemd_service",
    "ansible.builtin.user", "ansible.builtin.group", "payments.deploy.release_unpack", "payments.deploy.release_signature",
    "payments.deploy.haproxy_switch_info", "ansible.builtin.apt", "payments.deploy.pgbackrest_stanza",
    "payments.deploy.pgbackrest_backup", "payments.deploy.pgbackrest_restore",
}


def tasks_of(items: list[dict[str, t.Any]], inherited: str = "") -> t.Iterator[tuple[dict[str, t.Any], str]]:
    """Every task with its become keyword, its own or the one of the blocks around it."""
    for item in items or []:
        become = str(item.get("become", inherited))
        for key in ("block", "rescue", "always"):
            yield from tasks_of(item.get(key, []), become)
        yield item, become


def host_tasks_without_become(role: str, files: list[str], roles: Path = ROLES) -> list[str]:
    """The tasks of FILES that run a host module off the controller without the role's become input."""
    missing = []
    for name in files:
        path = roles / role / "tasks" / name
        for task, become in tasks_of(yaml.safe_load(path.read_text())):
            module = next((key for key in task if key in HOST_MODULES), None)
            if module and task.get("delegate_to") != "localhost" and f"{role}_become" not in become:
                missing.append(f"{path.name}: {task.get('name')}")
    return missing


@pytest.mark.parametrize("role", sorted(BECOME_ROLES))
def test_every_host_write_of_the_role_uses_its_become_input(role: str) -> None:
    assert host_tasks_without_become(role, BECOME_ROLES[role]) == []


def test_the_drill_runs_its_restore_block_with_become() -> None:
    tasks = yaml.safe_load((ROLES / "dr_drill" / "tasks" / "main.yml").read_text())
    block = next(task for task in tasks if "block" in task)
    assert "dr_drill_become" in str(block.get("become")), block.get("name")


def test_a_write_without_become_is_found(tmp_path: Path) -> None:
    role = tmp_path / "deploy_journal" / "tasks"
    role.mkdir(parents=True)
    original = (ROLES / "deploy_journal" / "tasks" / "main.yml").read_text()
    stripped = "\n".join(line for line in original.splitlines() if "deploy_journal_become" not in line)
    (role / "main.yml").write_text(stripped)
    found = host_tasks_without_become("deploy_journal", ["main.yml"], roles=tmp_path)
    assert "main.yml: Record the last switch of its kind" in found


PLAY = """
- name: Record a switch
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Record it
      ansible.builtin.include_role:
        name: payments.deploy.deploy_journal
"""


def journal_run(tmp_path: Path, journal: Path, become: bool) -> subprocess.CompletedProcess[str]:
    inventory = {"all": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": "/usr/bin/python3",
        "ansible_become_method": "ansible.builtin.su", "ansible_become_user": "postgres"}}}}
    (tmp_path / "inventory.json").write_text(json.dumps(inventory))
    (tmp_path / "play.yml").write_text(PLAY)
    variables = {"deploy_journal_dir": str(journal), "deploy_journal_become": become,
                 "deploy_journal_record": {"environment": "production", "kind": "deploy", "colour_from": "blue", "colour_to": "green"}}
    (tmp_path / "vars.json").write_text(json.dumps(variables))
    run_env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    run_env.update(ANSIBLE_COLLECTIONS_PATH=str(COLLECTIONS_DIR), ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_NOCOLOR="1")
    return subprocess.run([ANSIBLE_PLAYBOOK, "-i", str(tmp_path / "inventory.json"), str(tmp_path / "play.yml"),
                           "-e", f"@{tmp_path / 'vars.json'}"], capture_output=True, text=True, env=run_env,
                          cwd=tmp_path, timeout=120, check=False)


@pytest.mark.skipif(os.geteuid() != 0 or not Path("/usr/bin/python3").exists(), reason="becomes postgres with su: needs root")
@pytest.mark.parametrize("become, owner", [(True, "postgres"), (False, "root")])
def test_the_become_input_decides_who_writes_the_journal(tmp_path: Path, become: bool, owner: str) -> None:
    pwd.getpwnam("postgres")
    # A journal directory postgres owns, in a directory root may enter (pytest's own is root's only).
    journal = Path(tempfile.mkdtemp(prefix="payments-journal-"))
    try:
        shutil.chown(journal, "postgres")
        run = journal_run(tmp_path, journal, become=become)
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
        owners = {path.name: pwd.getpwuid(path.stat().st_uid).pw_name for path in (journal / "production").iterdir()}
        assert owners == {"history.jsonl": owner, "last-deploy.json": owner}
    finally:
        shutil.rmtree(journal)
