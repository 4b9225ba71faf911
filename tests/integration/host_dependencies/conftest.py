"""Runs the host_dependencies role's entry points with ansible-playbook against this machine (local connection, this
interpreter), in a group whose requirements each test sets."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import typing as t
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
HOST = "depshost"
GROUP = "probe_hosts"

PLAY = """- name: Host dependencies
  hosts: all
  gather_facts: false
  tasks:
    - name: Run an entry point of the role
      ansible.builtin.include_role:
        name: payments.deploy.host_dependencies
        tasks_from: "{{ entry_point }}"

    - name: Show what the last check found
      ansible.builtin.debug:
        msg:
          present: "{{ host_dependencies_check.present | map(attribute='name') }}"
          missing: "{{ host_dependencies_check.missing | map(attribute='name') }}"
          interpreter: "{{ host_dependencies_check.interpreter.executable }}"
"""


class Run(t.NamedTuple):
    rc: int
    report: dict[str, t.Any]  # the json callback's output
    stderr: str

    def tasks(self) -> list[tuple[str, dict[str, t.Any]]]:
        """(task name without its role, this host's result) of every task that ran on the host, in order."""
        return [(task["task"]["name"].split(" : ")[-1], task["hosts"][HOST]) for play in self.report["plays"]
                for task in play["tasks"] if HOST in task["hosts"]]

    def recap(self) -> dict[str, int]:
        return self.report["stats"][HOST]

    def failure(self) -> str:
        failed = [result["msg"] for name, result in self.tasks() if result.get("failed")]
        return " ".join(failed[-1].split()) if failed else ""

    def result(self) -> dict[str, t.Any]:
        shown = [result["msg"] for name, result in self.tasks() if name == "Show what the last check found"]
        assert shown, self.report
        return shown[-1]

    def said(self, name: str) -> str:
        return " ".join(next(result["msg"] for task, result in self.tasks() if task == name).split())


@pytest.fixture(scope="session")
def collections_dir() -> t.Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="host-dependencies-collections-"))
    (directory / "ansible_collections" / "payments").mkdir(parents=True)
    (directory / "ansible_collections" / "payments" / "deploy").symlink_to(REPO)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def run_role(collections_dir: Path, tmp_path: Path) -> t.Callable[..., Run]:
    def run(entry_point: str, requirements: dict[str, t.Any] | None = None, check: bool = False,
            groups: t.Sequence[str] = (GROUP,), **extra: t.Any) -> Run:
        """ansible-playbook running ``tasks_from: entry_point`` on one local host in ``groups``; ``requirements`` are
        this host's (its group's) when given, else the role's defaults apply."""
        host_vars: dict[str, t.Any] = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable,
                                       "entry_point": entry_point, **extra}
        if requirements is not None:
            host_vars.update(host_dependencies_group_roles={GROUP: ["probe"]},
                             host_dependencies_requirements={"probe": requirements})
        inventory = {"all": {"children": {group: {"hosts": {HOST: host_vars}} for group in groups}}}
        (tmp_path / "play.yml").write_text(PLAY)
        (tmp_path / "hosts.json").write_text(json.dumps(inventory))
        env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
               "ANSIBLE_COLLECTIONS_PATH": str(collections_dir), "ANSIBLE_PIPELINING": "1",
               "ANSIBLE_STDOUT_CALLBACK": "ansible.builtin.json"}
        argv = [str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(tmp_path / "hosts.json"),
                str(tmp_path / "play.yml")] + (["--check"] if check else [])
        proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False)
        try:
            # the JSON document first; the collection's phase_timings callback (ansible.cfg) prints after it
            report = json.JSONDecoder().raw_decode(proc.stdout.lstrip())[0]
        except ValueError:
            pytest.fail(f"ansible-playbook wrote no JSON report (rc {proc.returncode}): {proc.stdout}{proc.stderr}")
        return Run(proc.returncode, report, proc.stderr)
    return run
