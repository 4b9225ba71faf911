"""The payments.deploy.replication role through the real ansible-playbook (the checkout's ansible.cfg), against the
shared primary and its streaming replica: a migration-like change is on the replica when the role passes, check mode
runs the same wait, and a replica count the primary does not have fails the play with the module's message."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import typing as t
from pathlib import Path

import pytest

from replication_cluster import REPLICA_NAME, Primary, Replica
from host_python import HOST_PYTHON

pytestmark = pytest.mark.timeout(300)

ANSIBLE_PLAYBOOK = str(Path(sys.executable).with_name("ansible-playbook"))
ANSIBLE_CFG = Path(__file__).resolve().parents[3] / "ansible.cfg"
PLAYBOOK = [{
    "name": "Wait for the replicas after the migrations", "hosts": "localhost", "connection": "local", "gather_facts": False,
    "vars_files": ["secrets.json"],
    "tasks": [{"name": "Check the replicas", "ansible.builtin.include_role": {"name": "payments.deploy.replication"},
               "vars": {"replication_database_url": "{{ database_url }}"}}],
}]


def run_role(work_dir: Path, url: str, *extra: str) -> tuple[int, dict[str, t.Any], str]:
    """Exit status, the role's module result (the json callback's) and the whole output of one run."""
    (work_dir / "secrets.json").write_text(json.dumps({"database_url": url}))
    (work_dir / "play.yml").write_text(json.dumps(PLAYBOOK))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "PG"))}
    env.update(ANSIBLE_CONFIG=str(ANSIBLE_CFG), ANSIBLE_STDOUT_CALLBACK="ansible.posix.json", ANSIBLE_LOCALHOST_WARNING="0",
               ANSIBLE_INVENTORY_UNPARSED_WARNING="0", ANSIBLE_NOCOLOR="1")
    proc = subprocess.run([ANSIBLE_PLAYBOOK, "-i", "localhost,", "-e", f"ansible_python_interpreter={HOST_PYTHON}",
                           *extra, "play.yml"], capture_output=True, text=True, env=env, cwd=work_dir, timeout=240, check=False)
    try:
        # the checkout's phase_timings callback prints its table after the report
        report, dummy = json.JSONDecoder().raw_decode(proc.stdout[proc.stdout.index("{"):])
    except ValueError as exc:
        raise AssertionError(f"ansible-playbook printed no report ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}") from exc
    results = [task["hosts"]["localhost"] for task in report["plays"][0]["tasks"]
               if task["task"]["name"].endswith("Wait until every streaming replica has replayed the primary's WAL")]
    assert results, f"the role's wait never ran:\n{proc.stdout[-3000:]}"
    return proc.returncode, results[0], proc.stdout + proc.stderr


def test_the_role_passes_once_the_replica_has_the_change(primary: Primary, replica: Replica, work_dir: Path) -> None:
    table = f"role_{secrets.token_hex(4)}"
    rows = 100 + secrets.randbelow(100)
    primary.execute(f"CREATE TABLE {table} AS SELECT g AS id FROM generate_series(1, {rows}) g")
    required = json.dumps({"replication_required_replicas": [REPLICA_NAME]})
    code, result, output = run_role(work_dir, primary.dsn() + "?sslmode=disable", "-e", required)
    assert code == 0, output[-3000:]
    assert result["changed"] is False and result["streaming"] == 1
    assert [r["application_name"] for r in result["replicas"] if r["caught_up"]] == [REPLICA_NAME]
    assert replica.execute(f"SELECT count(*) FROM {table}")[0][0] == rows
    assert primary.password not in output


@pytest.mark.usefixtures("replica")
def test_the_role_runs_in_check_mode_and_fails_on_a_missing_replica(primary: Primary, work_dir: Path) -> None:
    url = primary.dsn() + "?sslmode=disable"
    code, result, output = run_role(work_dir, url, "--check")
    assert code == 0, output[-3000:]
    assert result["streaming"] == 1 and result["target_lsn"]
    code, result, output = run_role(work_dir, url, "-e", "replication_min_replicas=2", "-e", "replication_timeout=1")
    assert code != 0
    assert result["failed"] is True
    assert "1 of the 2 replica(s) required stream from the primary" in result["msg"]
    assert primary.password not in output
