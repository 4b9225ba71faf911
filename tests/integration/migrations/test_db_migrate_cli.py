"""db_migrate through ansible-playbook at -vvvv: it works as a collection module and the password never shows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from migration_plans import append_change, service_plan
from migration_cluster import Cluster
from host_python import HOST_PYTHON

pytestmark = pytest.mark.timeout(300)

ANSIBLE_PLAYBOOK = str(Path(sys.executable).with_name("ansible-playbook"))

PLAYBOOK = """
- name: Migrate through the collection
  hosts: localhost
  connection: local
  gather_facts: false
  vars_files: [secrets.json]
  module_defaults:
    payments.deploy.db_migrate:
      login_host: 127.0.0.1
      login_port: "{{ db_port }}"
      login_password: "{{ db_password }}"
      db: "{{ db_name }}"
      ssl_mode: disable
      plan_dir: "{{ plan_dir }}"
  tasks:
    - name: Preview
      payments.deploy.db_migrate:
      check_mode: true
      diff: true
      register: preview
    - name: Apply
      payments.deploy.db_migrate:
      diff: true
      register: applied
    - name: Apply again
      payments.deploy.db_migrate:
      register: again
    - name: Report
      ansible.builtin.copy:
        content: "{{ {'preview': preview, 'applied': applied, 'again': again} | to_json }}"
        dest: "{{ result_file }}"
        mode: "0600"
    - name: A change whose verify script fails
      payments.deploy.db_migrate:
        plan_dir: "{{ broken_plan_dir }}"
"""


def run_playbook(collections_dir: Path, work_dir: Path, extra: dict[str, object]) -> subprocess.CompletedProcess[str]:
    (work_dir / "site.yml").write_text(PLAYBOOK)
    secrets = work_dir / "secrets.json"
    secrets.write_text(json.dumps(extra))
    secrets.chmod(0o600)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(ANSIBLE_COLLECTIONS_PATH=str(collections_dir), ANSIBLE_LOCALHOST_WARNING="0",
               ANSIBLE_NOCOLOR="1")
    command = [ANSIBLE_PLAYBOOK, "-i", "localhost,", "-c", "local", "-e", f"ansible_python_interpreter={HOST_PYTHON}",
               "-vvvv", "site.yml"]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=work_dir, timeout=240, check=False)


def test_the_playbook_migrates_and_never_shows_the_password(cluster: Cluster, database: str, collections_dir: Path,
                                                            work_dir: Path) -> None:
    plan_dir = service_plan(work_dir / "migrations")
    broken = service_plan(work_dir / "broken")
    append_change(broken, "0005_broken", deploy="CREATE TABLE broken (id int);\n", verify="SELECT missing FROM broken;\n",
                  revert="DROP TABLE broken;\n")
    result_file = work_dir / "result.json"
    proc = run_playbook(collections_dir, work_dir, {
        "db_port": cluster.port, "db_password": cluster.password, "db_name": database, "plan_dir": str(plan_dir),
        "broken_plan_dir": str(broken), "result_file": str(result_file)})
    output = proc.stdout + proc.stderr
    assert proc.returncode == 2, output  # the last task fails on purpose
    assert "change 0005_broken: verify script" in output and "<localhost> EXEC" in output  # -vvvv output
    assert cluster.password not in output  # although it reached the server: the runs below authenticated with it

    results = json.loads(result_file.read_text())
    assert [p["name"] for p in results["preview"]["pending"]] == ["0001_customers", "0002_payments_and_events",
                                                                  "0003_payments_description", "0004_payments_created_at_index"]
    assert results["applied"]["changed"] is True and results["applied"]["heads"]["after"] == "0004_payments_created_at_index"
    assert results["again"]["changed"] is False and results["again"]["applied"] == []
    assert cluster.password not in json.dumps(results)
    assert cluster.password not in cluster.log()
