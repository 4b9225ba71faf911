"""The migrate and backup roles take their connection from DATABASE_URL as libpq reads it: a percent-encoded password
and the URL's sslmode reach db_migrate, pg_amcheck and pg_backup. One ansible-playbook run against a real PostgreSQL."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import typing as t
from pathlib import Path
from urllib.parse import quote

import pytest

from migration_cluster import COLLECTION_ROOT, SERVICE_PLAN, Cluster
from host_python import HOST_PYTHON

pytestmark = pytest.mark.timeout(300)

ANSIBLE_PLAYBOOK = str(Path(sys.executable).with_name("ansible-playbook"))
PLAYBOOK = """
- name: Migrate and back up with the service's DATABASE_URL
  hosts: localhost
  connection: local
  gather_facts: false
  vars_files: [secrets.json]
  tasks:
    - name: Migrate
      ansible.builtin.include_role:
        name: payments.deploy.migrate
      vars:
        migrate_database_url: "{{ database_url }}"
        migrate_plan_dir: "{{ plan_dir }}"
    - name: Back up
      ansible.builtin.include_role:
        name: payments.deploy.backup
      vars:
        backup_database_url: "{{ database_url }}"
        backup_encryption_key: "{{ encryption_key }}"
        backup_dest_dir: "{{ backup_dir }}"
    - name: Report
      ansible.builtin.copy:
        content: "{{ {'migrate': migrate_result, 'amcheck': migrate_amcheck_result, 'backup': backup_result} | to_json }}"
        dest: "{{ result_file }}"
        mode: "0600"
"""


@pytest.fixture
def odd_role(cluster: Cluster, database: str) -> t.Iterator[tuple[str, str]]:
    """A login role whose password needs percent-encoding in a URL."""
    name, password = f"mig_{secrets.token_hex(4)}", f"p@ss:w/rd%?#&{secrets.token_hex(4)}"
    with cluster.connect("postgres") as conn:
        conn.execute(f"CREATE ROLE {name} LOGIN SUPERUSER PASSWORD '{password}'")
    with cluster.connect(database) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS amcheck")  # what the deploy's amcheck expects to find
    yield name, password
    for dbname in (database, "postgres"):
        with cluster.connect(dbname) as conn:
            conn.execute(f"DROP OWNED BY {name}")
    with cluster.connect("postgres") as conn:
        conn.execute(f"DROP ROLE {name}")


def test_roles_use_the_url_as_libpq_reads_it(cluster: Cluster, database: str, odd_role: tuple[str, str],
                                             collections_dir: Path, work_dir: Path) -> None:
    role, password = odd_role
    url = f"postgresql://{role}:{quote(password, safe='')}@127.0.0.1:{cluster.port}/{database}?sslmode=disable"
    (work_dir / "secrets.json").write_text(json.dumps({"database_url": url, "encryption_key": secrets.token_hex(32)}))
    (work_dir / "play.yml").write_text(PLAYBOOK)
    result_file = work_dir / "result.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    # no payments_db_ssl_mode: the roles' default is verify-full, so only the URL's sslmode=disable lets this connect
    env.update(ANSIBLE_COLLECTIONS_PATH=str(collections_dir), ANSIBLE_LOCALHOST_WARNING="0",
               ANSIBLE_INVENTORY_UNPARSED_WARNING="0", ANSIBLE_ROLES_PATH=str(COLLECTION_ROOT / "roles"))
    proc = subprocess.run([ANSIBLE_PLAYBOOK, "-i", "localhost,", "-e", f"ansible_python_interpreter={HOST_PYTHON}",
                           "-e", f"plan_dir={SERVICE_PLAN} backup_dir={work_dir / 'backups'} result_file={result_file}",
                           str(work_dir / "play.yml")], capture_output=True, text=True, env=env, cwd=work_dir,
                          timeout=240, check=False)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert password not in output and quote(password, safe="") not in output
    result = json.loads(result_file.read_text())
    assert result["migrate"]["heads"]["after"] == "0004_payments_created_at_index"
    assert result["amcheck"]["connection"]["user"] == role and result["amcheck"]["connection"]["ssl_mode"] == "disable"
    assert result["backup"]["connection"]["user"] == role and result["backup"]["connection"]["ssl_mode"] == "disable"
    with cluster.connect(database) as conn:
        assert {row[0] for row in conn.execute("SELECT applied_by FROM payments_deploy.changes")} == {role}
