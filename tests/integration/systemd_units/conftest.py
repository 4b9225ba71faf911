"""A way to run the release role's configure tasks with ansible-playbook on local "hosts", each a temporary directory
used as the host's root, with the collection found through a temporary collections path."""

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
from host_python import HOST_PYTHON

REPO = Path(__file__).resolve().parents[3]

PLAY = """- name: Configure a colour
  hosts: all
  gather_facts: false
  tasks:
    - name: Validate the options against an entry point of the role
      ansible.builtin.include_role:
        name: payments.deploy.release
        tasks_from: "{{ entry_point }}"
      when: entry_point is defined

    - name: Render the colour's env file and service definition
      ansible.builtin.include_role:
        name: payments.deploy.release
        tasks_from: configure

    - name: Show how the service manager would take the change
      ansible.builtin.debug:
        msg: "reload={{ release_reload }}"

    # configure notified the restart handlers: this play only renders the files, so it ends before they run
    - name: End before the service manager is asked anything
      ansible.builtin.meta: end_play
"""


class Playbook(t.Protocol):
    def __call__(self, name: str, hosts: dict[str, dict[str, t.Any]]) -> subprocess.CompletedProcess: ...


@pytest.fixture(scope="session")
def collections_dir() -> t.Iterator[Path]:
    directory = Path(tempfile.mkdtemp(prefix="systemd-units-collections-"))
    (directory / "ansible_collections" / "payments").mkdir(parents=True)
    (directory / "ansible_collections" / "payments" / "deploy").symlink_to(REPO)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def configure(collections_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Playbook:
    """Runs PLAY on the given hosts (their variables merged over nothing else) and returns the finished process."""
    base = tmp_path_factory.mktemp("systemd-units-runs")

    def run(name: str, hosts: dict[str, dict[str, t.Any]]) -> subprocess.CompletedProcess:
        directory = base / name
        directory.mkdir()
        playbook, inventory = directory / "configure.yml", directory / "hosts.json"
        playbook.write_text(PLAY)
        common = {"ansible_connection": "local", "ansible_python_interpreter": HOST_PYTHON}
        inventory.write_text(json.dumps({"all": {"hosts": hosts, "vars": common}}))
        env = {**os.environ, "ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_NOCOLOR": "1",
               "ANSIBLE_COLLECTIONS_PATH": str(collections_dir), "ANSIBLE_PIPELINING": "1"}
        return subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory),
                               str(playbook)], cwd=REPO, env=env, capture_output=True, text=True, timeout=180,
                              check=False)

    return run
